using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.IO;

/// <summary>Where initializer data goes when a model is saved.</summary>
public enum TensorLayout
{
    /// <summary>Each tensor stays where it was (external stays external, embedded stays embedded);
    /// new tensors at or above the threshold go external when the model already has external data.</summary>
    Preserve,
    /// <summary>Everything embedded in the .onnx file.</summary>
    Embed,
    /// <summary>Tensors at or above the threshold go to one external data file.</summary>
    External,
}

public sealed record SaveOptions
{
    public TensorLayout Layout { get; init; } = TensorLayout.Preserve;

    /// <summary>Tensors of at least this many bytes are stored externally (External layout, and any
    /// layout forced external by the protobuf limit). ONNX's own default is 1024.</summary>
    public long ExternalThreshold { get; init; } = 1024;

    /// <summary>External data file name, in the model's folder; default "&lt;model file name&gt;.data".</summary>
    public string? DataFileName { get; init; }

    /// <summary>Tensors of at least 1 MiB start at multiples of this (64 KiB: the mmap allocation
    /// granularity, so runtimes can map them in place); smaller ones at multiples of 64.</summary>
    public int LargeTensorAlignment { get; init; } = 65536;

    /// <summary>A protobuf may not exceed 2 GB; above this size the save moves tensors to external data.
    /// Lowered in tests to exercise that path cheaply.</summary>
    public long ProtobufLimit { get; init; } = int.MaxValue;

    /// <summary>fsync the files before the atomic rename (durable against power loss).</summary>
    public bool Durable { get; init; } = true;

    /// <summary>Replace an existing model file or data file at the destination. When false (the default)
    /// such a save fails with <see cref="OutputExistsException"/> before anything is written.</summary>
    public bool Overwrite { get; init; }
}

public sealed record SaveResult(string ModelPath, string? DataPath, int EmbeddedTensors, int ExternalTensors,
    long ExternalBytes, bool ForcedExternal);

/// <summary>Saves a model atomically: the external data file and the model are written to temporary
/// files in the destination folder and renamed into place (data first), so a failure or crash never
/// leaves a half-written model. Refuses to overwrite any file the model itself was read from.</summary>
public static class ModelWriter
{
    public static SaveResult Save(Model model, string path, SaveOptions? options = null)
    {
        options ??= new SaveOptions();
        ArgumentNullException.ThrowIfNull(path);
        if (string.IsNullOrWhiteSpace(path)) throw new ModelSaveException(path, "empty path");
        string modelPath;
        try { modelPath = Path.GetFullPath(path); }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ModelSaveException(path, $"invalid path: {ModelReader.FirstLine(ex.Message)}", ex);
        }
        string folder = Path.GetDirectoryName(modelPath)!;
        string dataName = options.DataFileName ?? Path.GetFileName(modelPath) + ".data";
        if (dataName.Contains('/') || dataName.Contains('\\') || dataName is "." or "..")
            throw new ModelSaveException(path, $"external data file name '{dataName}' must be a plain file name");
        string dataPath = Path.Combine(folder, dataName);
        CheckNotAnInput(model, path, modelPath, dataPath);
        if (Directory.Exists(modelPath)) throw new ModelSaveException(path, "is a directory");

        var initializers = model.Graph.SelfAndSubgraphs().SelectMany(g => g.Initializers).ToList();
        foreach (var v in initializers)
            if (v.ConstValue is MissingExternalTensor missing)
                throw new ModelSaveException(path, $"cannot save: data of initializer '{v.Name}' is unavailable ({missing.Reason})");

        var external = ChooseExternal(model, initializers, options, out bool forced);
        if (!options.Overwrite)
        {
            if (File.Exists(modelPath)) throw new OutputExistsException(path, "already exists");
            if (external.Count > 0 && File.Exists(dataPath)) throw new OutputExistsException(dataPath, "already exists (the model's external data file would replace it)");
        }
        if (forced && EstimateSize(model, external) > options.ProtobufLimit)
            throw new ModelSaveException(path, $"the graph is larger than the {options.ProtobufLimit}-byte protobuf limit even with all tensors of {options.ExternalThreshold}+ bytes external");

        try { Directory.CreateDirectory(folder); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ModelSaveException(path, $"cannot create the output folder: {ModelReader.FirstLine(ex.Message)}", ex);
        }
        string token = Guid.NewGuid().ToString("N")[..12];
        string modelTemp = Path.Combine(folder, $".{Path.GetFileName(modelPath)}.{token}.tmp");
        string dataTemp = Path.Combine(folder, $".{dataName}.{token}.tmp");
        try
        {
            var offsets = external.Count > 0 ? WriteData(initializers.Where(external.Contains), dataTemp, options) : [];
            using (var stream = new FileStream(modelTemp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                ModelSerializer.Write(model, stream, v => offsets.TryGetValue(v, out long offset)
                    ? TensorProtoPlacement.External(dataName, offset)
                    : TensorProtoPlacement.Embedded);
                if (options.Durable) stream.Flush(flushToDisk: true);
            }
            if (external.Count > 0) File.Move(dataTemp, dataPath, overwrite: true);
            File.Move(modelTemp, modelPath, overwrite: true);
            long bytes = external.Sum(v => v.ConstValue!.ByteLength);
            return new SaveResult(modelPath, external.Count > 0 ? dataPath : null, initializers.Count - external.Count, external.Count, bytes, forced);
        }
        catch (Exception ex) when (ex is not ModelSaveException)
        {
            throw new ModelSaveException(path, $"cannot write: {ModelReader.FirstLine(ex.Message)}", ex);
        }
        finally
        {
            TryDelete(modelTemp);
            TryDelete(dataTemp);
        }
    }

    private static void CheckNotAnInput(Model model, string path, string modelPath, string dataPath)
    {
        if (model.SourcePath is { } source && string.Equals(source, modelPath, StringComparison.Ordinal))
            throw new ModelSaveException(path, "is the file the model was loaded from; choose another output path");
        // Same name: both temporary files would collide, and the model would replace its own data.
        if (string.Equals(dataPath, modelPath, StringComparison.Ordinal))
            throw new ModelSaveException(path, $"external data file name '{Path.GetFileName(dataPath)}' is the model file's own name; choose another data file name");
        if (model.SourcePath is { } src && string.Equals(src, dataPath, StringComparison.Ordinal))
            throw new ModelSaveException(path, $"its data file '{dataPath}' is the file the model was loaded from; choose another data file name");
        foreach (var file in model.ExternalFiles.Keys)
        {
            if (string.Equals(file, modelPath, StringComparison.Ordinal))
                throw new ModelSaveException(path, "is an external data file the model reads from; choose another output path");
            if (string.Equals(file, dataPath, StringComparison.Ordinal))
                throw new ModelSaveException(path, $"its data file '{dataPath}' is an input of this model; choose another output folder or data file name");
        }
    }

    private static HashSet<Value> ChooseExternal(Model model, List<Value> initializers, SaveOptions options, out bool forced)
    {
        forced = false;
        bool hasExternal = initializers.Any(v => v.ConstValue!.Storage == TensorStorage.External);
        var external = new HashSet<Value>();
        foreach (var v in initializers)
        {
            var t = v.ConstValue!;
            if (t.DataType == TensorDataType.String) continue; // strings have no raw layout
            bool big = t.ByteLength >= options.ExternalThreshold;
            bool goesOut = options.Layout switch
            {
                TensorLayout.Embed => false,
                TensorLayout.External => big,
                _ => t.Storage == TensorStorage.External || (t.Storage == TensorStorage.Memory && big && hasExternal),
            };
            if (goesOut) external.Add(v);
        }
        if (EstimateSize(model, external) > options.ProtobufLimit)
        {
            forced = true;
            foreach (var v in initializers)
                if (v.ConstValue!.DataType != TensorDataType.String && v.ConstValue.ByteLength >= options.ExternalThreshold) external.Add(v);
        }
        return external;
    }

    /// <summary>Size of the protobuf if the given tensors go external: the graph without tensor data,
    /// plus the embedded tensors' bytes (computed without building a &gt;2 GB message).</summary>
    private static long EstimateSize(Model model, HashSet<Value> external)
    {
        // Exact, without building the protobuf or reading tensor data.
        return ModelSerializer.Measure(model, v => external.Contains(v) ? TensorProtoPlacement.External("x", 0) : TensorProtoPlacement.Embedded);
    }

    private static Dictionary<Value, long> WriteData(IEnumerable<Value> tensors, string dataTemp, SaveOptions options)
    {
        var offsets = new Dictionary<Value, long>();
        // Unbuffered: tensors are written straight from their (memory-mapped) source in large chunks.
        using var stream = new FileStream(dataTemp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0);
        long position = 0;
        foreach (var v in tensors)
        {
            var t = v.ConstValue!;
            int alignment = t.ByteLength >= (1 << 20) ? options.LargeTensorAlignment : 64;
            long aligned = (position + alignment - 1) / alignment * alignment;
            if (aligned > position) stream.Write(new byte[aligned - position]);
            offsets[v] = aligned;
            // An unchanged external tensor is copied file to file by the kernel when it can be.
            if (!(t is MappedTensor { File.Handle: { } handle } mapped && KernelCopy.TryAppend(handle, mapped.Offset, stream, t.ByteLength)))
                t.CopyTo(stream);
            position = aligned + t.ByteLength;
        }
        if (options.Durable) stream.Flush(flushToDisk: true);
        return offsets;
    }

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
