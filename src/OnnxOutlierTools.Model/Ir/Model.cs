using Onnx.Protobuf;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Ir;

public sealed record OpsetId(string Domain, long Version);

/// <summary>An ONNX model in IR form. Owns the memory maps of its external data files: tensors read
/// from them stay valid until the model is disposed.</summary>
public sealed class Model : IDisposable
{
    private readonly List<IDisposable> _resources = [];
    private NameAuthority? _names;

    public Model(Graph graph, long irVersion = 10)
    {
        Graph = graph;
        IrVersion = irVersion;
        Extras = new ModelProto();
    }

    internal Model(ModelProto extras, Graph graph)
    {
        Extras = extras;
        Graph = graph;
        IrVersion = extras.IrVersion;
        ProducerName = extras.HasProducerName ? extras.ProducerName : null;
        ProducerVersion = extras.HasProducerVersion ? extras.ProducerVersion : null;
        foreach (var o in extras.OpsetImport) OpsetImports.Add(new OpsetId(o.HasDomain ? o.Domain : "", o.Version));
        foreach (var m in extras.MetadataProps) Metadata.Add(new KeyValuePair<string, string>(m.Key, m.Value));
    }

    public long IrVersion { get; set; }
    public string? ProducerName { get; set; }
    public string? ProducerVersion { get; set; }
    public Graph Graph { get; internal set; }
    public List<OpsetId> OpsetImports { get; } = [];
    public List<KeyValuePair<string, string>> Metadata { get; } = [];

    public string? DocString
    {
        get => Extras.HasDocString ? Extras.DocString : null;
        set { if (value is null) Extras.ClearDocString(); else Extras.DocString = value; }
    }

    /// <summary>Everything the IR does not model (functions, training_info, configuration, domain,
    /// model_version, unknown fields), written back unchanged.</summary>
    internal ModelProto Extras { get; }

    /// <summary>Local functions, in protobuf form (read-only for the toolkit).</summary>
    public IReadOnlyList<FunctionProto> Functions => Extras.Functions;

    /// <summary>The bytes the model was parsed from (the memory-mapped file): embedded tensors are views into
    /// them, so the model keeps them alive for as long as it is.</summary>
    internal ReadOnlyMemory<byte> SourceBytes { get; set; }

    /// <summary>The file the model was loaded from, if any.</summary>
    public string? SourcePath { get; internal set; }

    /// <summary>Device and inode of the file the model was read from (null when loaded from memory or
    /// where the OS has no such identity): saves refuse to replace it whatever path names it.</summary>
    public IO.FileIdentity? SourceIdentity { get; internal set; }

    /// <summary>What the model's folder says about it (config.json, genai_config.json, tokenizer files),
    /// read once on first use; null for a model that was not loaded from a file.</summary>
    public IO.ModelFolderFacts? FolderFacts => SourcePath is null ? null : _folderFacts ??= IO.ModelFolderFacts.Read(Path.GetDirectoryName(SourcePath)!);
    private IO.ModelFolderFacts? _folderFacts;

    /// <summary>External data files the model's tensors map, by full path.</summary>
    public IReadOnlyDictionary<string, ExternalDataFile> ExternalFiles => _externalFiles;
    private readonly Dictionary<string, ExternalDataFile> _externalFiles = new(StringComparer.Ordinal);

    /// <summary>External locations that were referenced but unavailable (only when loaded without
    /// requiring external data), with the reason.</summary>
    public IReadOnlyDictionary<string, string> MissingExternalFiles => _missing;
    private readonly Dictionary<string, string> _missing = new(StringComparer.Ordinal);

    public NameAuthority Names => _names ??= NameAuthority.For(Graph);

    public long? OpsetVersion(string domain)
    {
        foreach (var o in OpsetImports)
            if (o.Domain == domain || (domain is "" or "ai.onnx" && o.Domain is "" or "ai.onnx")) return o.Version;
        return null;
    }

    /// <summary>Adds or raises an opset import (e.g. com.microsoft for fused ops a pass inserts).</summary>
    public void RequireOpset(string domain, long version)
    {
        int i = OpsetImports.FindIndex(o => o.Domain == domain);
        if (i < 0) OpsetImports.Add(new OpsetId(domain, version));
        else if (OpsetImports[i].Version < version) OpsetImports[i] = OpsetImports[i] with { Version = version };
    }

    internal void AddExternalFile(ExternalDataFile file) => _externalFiles[file.FullPath] = file;
    internal void AddMissing(string location, string reason) => _missing.TryAdd(location, reason);
    internal void Own(IDisposable resource) => _resources.Add(resource);

    public void Dispose()
    {
        foreach (var f in _externalFiles.Values) f.Dispose();
        foreach (var r in _resources) r.Dispose();
        _externalFiles.Clear();
    }
}
