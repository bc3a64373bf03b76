using System.Text.Json;
using System.Text.Json.Serialization;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Inspection;

/// <summary>
/// What a model contains, read from the graph alone: no tensor data is touched (only data types,
/// shapes and byte lengths), so it works on a model loaded without its external data
/// (<c>new LoadOptions { RequireExternalData = false }</c>) and on models far larger than memory.
/// </summary>
/// <remarks>
/// JSON contract (<see cref="ToJson"/>): camelCase property names that do not change; every section
/// is a JSON object or an array of objects, so later versions add information as new properties
/// (a <c>layers</c> section with the recognized transformer structure is planned) without breaking
/// readers. Readers must ignore properties they do not know. <see cref="SchemaVersion"/> changes only
/// when an existing property changes meaning or is removed.
/// </remarks>
public sealed record ModelSummary
{
    /// <summary>The schema version this code writes.</summary>
    public const int CurrentSchemaVersion = 1;

    public int SchemaVersion { get; init; } = CurrentSchemaVersion;

    /// <summary>Absolute path of the model file; null for a model that was not loaded from a file.</summary>
    public string? Path { get; init; }

    /// <summary>Size of the model file in bytes (without external data); null when unknown.</summary>
    public long? FileBytes { get; init; }

    public string? ProducerName { get; init; }
    public string? ProducerVersion { get; init; }
    public long IrVersion { get; init; }

    /// <summary>Opset imports in file order; the default domain ("") is shown as "ai.onnx".</summary>
    public IReadOnlyList<OpsetSummary> OpsetImports { get; init; } = [];

    /// <summary>Graph inputs of the main graph (initializers that are also inputs, IR &lt; 4 style, excluded).</summary>
    public IReadOnlyList<ValueSummary> Inputs { get; init; } = [];
    public IReadOnlyList<ValueSummary> Outputs { get; init; } = [];

    public NodeCounts Nodes { get; init; } = new(0, 0);

    /// <summary>Op-type histogram keyed by <see cref="OpTypeCount.Key"/> (<c>MatMul</c>,
    /// <c>com.microsoft::GroupQueryAttention</c>), most frequent first (then by key).</summary>
    public IReadOnlyDictionary<string, OpTypeCount> OpTypes { get; init; } = new Dictionary<string, OpTypeCount>();

    /// <summary>Graphs held in node attributes (If/Loop/Scan bodies, BeamSearch decoders), depth first.</summary>
    public IReadOnlyList<NestedGraphSummary> NestedGraphs { get; init; } = [];

    public InitializerSummary Initializers { get; init; } = new();

    /// <summary>External data files referenced by initializers, in order of first reference.</summary>
    public IReadOnlyList<ExternalDataSummary> ExternalData { get; init; } = [];

    /// <summary>What the model's folder says (config.json, genai_config.json, tokenizer files); null when the
    /// model was not read from a file.</summary>
    public IO.ModelFolderFacts? Folder { get; init; }

    /// <summary>Summarizes <paramref name="model"/> without reading tensor data.</summary>
    public static ModelSummary Create(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        string? path = model.SourcePath;
        long? fileBytes = null;
        if (path is not null)
        {
            // Through links (the hub cache's files are links into blobs/): the size of what the path names.
            var facts = IO.FileFacts.Of(path);
            if (facts.Kind == IO.FileKind.Regular) fileBytes = facts.Length;
        }

        var main = model.Graph;
        var ops = new Dictionary<string, OpTypeCount>(StringComparer.Ordinal);
        var nested = new List<NestedGraphSummary>();
        int nestedNodes = 0;
        CountOps(main, nestedDepth: 0);

        var initializers = SummarizeInitializers(main);
        return new ModelSummary
        {
            Path = path,
            FileBytes = fileBytes,
            ProducerName = model.ProducerName,
            ProducerVersion = model.ProducerVersion,
            IrVersion = model.IrVersion,
            OpsetImports = model.OpsetImports.Select(o => new OpsetSummary(DomainName(o.Domain), o.Version)).ToArray(),
            Inputs = main.Inputs.Where(v => !v.IsInitializer).Select(ValueSummary.From).ToArray(),
            Outputs = main.Outputs.Select(ValueSummary.From).ToArray(),
            Nodes = new NodeCounts(main.Nodes.Count, nestedNodes),
            OpTypes = ops.Values.OrderByDescending(o => o.Total).ThenBy(o => o.Key, StringComparer.Ordinal)
                .ToDictionary(o => o.Key, StringComparer.Ordinal),
            NestedGraphs = nested,
            Initializers = initializers,
            ExternalData = SummarizeExternalData(model),
            Folder = model.FolderFacts,
        };

        void CountOps(Graph graph, int nestedDepth)
        {
            foreach (var node in graph.Nodes)
            {
                string key = OpTypeCount.KeyOf(node.Domain, node.OpType);
                var entry = ops.TryGetValue(key, out var e) ? e : new OpTypeCount(DomainName(node.Domain), node.OpType, 0, 0);
                ops[key] = nestedDepth == 0 ? entry with { Count = entry.Count + 1 } : entry with { NestedCount = entry.NestedCount + 1 };
                if (nestedDepth > 0) nestedNodes++;
                foreach (var attr in node.Attributes)
                {
                    for (int i = 0; i < attr.Graphs.Count; i++)
                    {
                        var sub = attr.Graphs[i];
                        nested.Add(new NestedGraphSummary(
                            Owner: node.Describe(),
                            OwnerOpType: OpTypeCount.KeyOf(node.Domain, node.OpType),
                            OwnerName: node.Name,
                            Attribute: attr.Name,
                            Index: attr.Type == AttributeProto.Types.AttributeType.Graphs ? i : null,
                            GraphName: sub.Name,
                            ParentGraph: graph.Name,
                            Depth: nestedDepth + 1,
                            NodeCount: sub.Nodes.Count,
                            InitializerCount: sub.Initializers.Count));
                        CountOps(sub, nestedDepth + 1);
                    }
                }
            }
        }
    }

    /// <summary>"" and "ai.onnx" are the same domain; summaries say "ai.onnx".</summary>
    public static string DomainName(string domain) => domain is "" ? "ai.onnx" : domain;

    private static InitializerSummary SummarizeInitializers(Graph main)
    {
        int count = 0, nestedCount = 0;
        // 128-bit sums: each tensor's count fits a long (checked when it is read), their sum may not
        // (crafted dims made these totals negative).
        Int128 parameters = 0, bytes = 0;
        var byType = new Dictionary<string, DataTypeTotals>(StringComparer.Ordinal);
        foreach (var graph in main.SelfAndSubgraphs())
        {
            foreach (var v in graph.Initializers)
            {
                var t = v.ConstValue;
                if (t is null) continue;
                if (graph == main) count++; else nestedCount++;
                parameters += t.ElementCount;
                bytes += t.ByteLength;
                string name = t.DataType.OnnxName();
                var totals = byType.TryGetValue(name, out var x) ? x : new DataTypeTotals(0, 0, 0);
                byType[name] = new DataTypeTotals(totals.TensorCount + 1, totals.ParameterCount + t.ElementCount, totals.Bytes + t.ByteLength);
            }
        }
        return new InitializerSummary
        {
            Count = count,
            NestedCount = nestedCount,
            ParameterCount = parameters,
            Bytes = bytes,
            ByDataType = byType.OrderByDescending(p => p.Value.Bytes).ThenBy(p => p.Key, StringComparer.Ordinal)
                .ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal),
        };
    }

    private static List<ExternalDataSummary> SummarizeExternalData(Model model)
    {
        string? folder = model.SourcePath is { } modelPath ? System.IO.Path.GetDirectoryName(modelPath) : null;
        var files = new Dictionary<string, (string? FullPath, int Tensors, long Required)>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var graph in model.Graph.SelfAndSubgraphs())
        {
            foreach (var v in graph.Initializers)
            {
                if (v.ConstValue is not { Storage: TensorStorage.External, Source: { } source } t) continue;
                ExternalDataReference reference;
                try { reference = ExternalDataReference.Parse(source); }
                catch (TensorFormatException) { continue; }
                string? full = t is MappedTensor mapped ? mapped.File.FullPath
                    : folder is not null ? System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, reference.Location)) : null;
                long end = reference.Offset > long.MaxValue - t.ByteLength ? long.MaxValue : reference.Offset + t.ByteLength;
                if (!files.TryGetValue(reference.Location, out var entry))
                {
                    order.Add(reference.Location);
                    entry = (full, 0, 0);
                }
                files[reference.Location] = (entry.FullPath ?? full, entry.Tensors + 1, Math.Max(entry.Required, end));
            }
        }

        var result = new List<ExternalDataSummary>(order.Count);
        foreach (string location in order)
        {
            var (full, tensors, required) = files[location];
            var facts = full is null ? IO.FileFacts.Missing : IO.FileFacts.Of(full);
            bool present = facts.Kind == IO.FileKind.Regular;
            long? size = present ? facts.Length : null;
            string? reason;
            if (!present)
                reason = model.MissingExternalFiles.TryGetValue(location, out var why) && why != "too short" ? why
                    : full is not null && Directory.Exists(full) ? "is a directory" : "not found";
            else if (size < required)
                reason = $"too short: tensors need {required} bytes, the file has {size}";
            else
                reason = null;
            result.Add(new ExternalDataSummary(location, full, present, size, tensors, required, reason));
        }
        return result;
    }

    // ---- JSON ---------------------------------------------------------------------------------

    /// <summary>The options <see cref="ToJson"/> and <see cref="FromJson"/> use: the shared <see cref="JsonOutput.Options"/>.</summary>
    public static JsonSerializerOptions JsonOptions => JsonOutput.Options;

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads a summary written by <see cref="ToJson"/> (unknown properties are ignored).</summary>
    public static ModelSummary FromJson(string json) =>
        JsonSerializer.Deserialize<ModelSummary>(json, JsonOptions) ?? throw new JsonException("null model summary");
}

public sealed record OpsetSummary(string Domain, long Version);

/// <summary>A graph input or output. <see cref="Kind"/> is tensor, sparseTensor, sequence, map,
/// optional, opaque or unknown (no type declared); element type and shape are given for tensors.</summary>
public sealed record ValueSummary(string Name, string Kind, string? ElementType, IReadOnlyList<Dim>? Shape)
{
    public static ValueSummary From(Value value)
    {
        var type = value.Type;
        if (value.ConstValue is { } t) return new ValueSummary(value.Name, "tensor", t.DataType.OnnxName(), value.Shape);
        string kind = type?.ValueCase switch
        {
            TypeProto.ValueOneofCase.TensorType => "tensor",
            TypeProto.ValueOneofCase.SparseTensorType => "sparseTensor",
            TypeProto.ValueOneofCase.SequenceType => "sequence",
            TypeProto.ValueOneofCase.MapType => "map",
            TypeProto.ValueOneofCase.OptionalType => "optional",
            TypeProto.ValueOneofCase.OpaqueType => "opaque",
            _ => "unknown",
        };
        string? elementType = null;
        IReadOnlyList<Dim>? shape = null;
        if (type?.TensorType is { } tensor)
        {
            if (tensor.HasElemType) elementType = ((TensorDataType)tensor.ElemType).OnnxName();
            shape = value.Shape;
        }
        else if (type?.SparseTensorType is { } sparse)
        {
            if (sparse.HasElemType) elementType = ((TensorDataType)sparse.ElemType).OnnxName();
            shape = sparse.Shape?.Dim.Select(Dim.From).ToArray();
        }
        return new ValueSummary(value.Name, kind, elementType, shape);
    }

    /// <summary>"[batch_size,sequence_length,32000]", "?" for an unknown dimension, "[?]" for unknown rank.</summary>
    [JsonIgnore]
    public string ShapeText => Shape is null ? "[?]" : "[" + string.Join(",", Shape) + "]";
}

/// <summary>Node counts: the main graph's own nodes and the nodes of all nested graphs.</summary>
public sealed record NodeCounts(int MainGraph, int Nested)
{
    public int Total => MainGraph + Nested;
}

/// <summary>One op type: <see cref="Count"/> nodes in the main graph, <see cref="NestedCount"/> in nested graphs.</summary>
public sealed record OpTypeCount(string Domain, string OpType, int Count, int NestedCount)
{
    /// <summary>"OpType" for the default domain, "domain::OpType" otherwise (the key in <see cref="ModelSummary.OpTypes"/>).</summary>
    [JsonIgnore]
    public string Key => KeyOf(Domain, OpType);
    public int Total => Count + NestedCount;

    public static string KeyOf(string domain, string opType) => domain is "" or "ai.onnx" ? opType : $"{domain}::{opType}";
}

/// <summary>A graph held in attribute <see cref="Attribute"/> of node <see cref="Owner"/>
/// (<see cref="Index"/> is set for GRAPHS attributes). <see cref="NodeCount"/> counts this graph's
/// own nodes; graphs nested deeper are listed separately with a larger <see cref="Depth"/>.</summary>
public sealed record NestedGraphSummary(
    string Owner, string OwnerOpType, string OwnerName, string Attribute, int? Index, string GraphName,
    string ParentGraph, int Depth, int NodeCount, int InitializerCount);

/// <summary>Initializers: <see cref="Count"/> in the main graph, <see cref="NestedCount"/> in nested
/// graphs; parameter (element) and byte totals cover both.</summary>
public sealed record InitializerSummary
{
    public int Count { get; init; }
    public int NestedCount { get; init; }
    public Int128 ParameterCount { get; init; }
    public Int128 Bytes { get; init; }

    /// <summary>Totals per element type (ONNX names, e.g. FLOAT16), largest first.</summary>
    public IReadOnlyDictionary<string, DataTypeTotals> ByDataType { get; init; } = new Dictionary<string, DataTypeTotals>();
}

public sealed record DataTypeTotals(int TensorCount, Int128 ParameterCount, Int128 Bytes);

/// <summary>An external data file. <see cref="Location"/> is as written in the model (relative to its
/// folder); <see cref="Bytes"/> is the file's size on disk (null when absent); <see cref="RequiredBytes"/>
/// is the end of the last tensor in it. <see cref="Reason"/> says why the data is unusable (absent,
/// a directory, too short); null when it is fine.</summary>
public sealed record ExternalDataSummary(
    string Location, string? Path, bool Present, long? Bytes, int TensorCount, long RequiredBytes, string? Reason);

/// <summary>Dimensions in JSON: a number, a symbolic name (string), or null when unknown.</summary>
public sealed class DimJsonConverter : JsonConverter<Dim>
{
    public override bool HandleNull => true;

    public override Dim Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.Number => new Dim(reader.GetInt64()),
        JsonTokenType.String => Dim.Symbolic(reader.GetString()!),
        JsonTokenType.Null => Dim.Unknown,
        _ => throw new JsonException($"a dimension is a number, a string or null, not {reader.TokenType}"),
    };

    public override void Write(Utf8JsonWriter writer, Dim value, JsonSerializerOptions options)
    {
        if (value.Value is long v) writer.WriteNumberValue(v);
        else if (value.Param is not null) writer.WriteStringValue(value.Param);
        else writer.WriteNullValue();
    }
}
