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

    /// <summary>Called before each rename (source, destination); tests throw from it to prove that a failed
    /// rename leaves a consistent output.</summary>
    internal Action<string, string>? RenameHook { get; init; }
}

/// <summary>What a save did. <see cref="Warnings"/> holds what the user should know although the save
/// succeeded (for example a data file that kept its temporary name).</summary>
public sealed record SaveResult(string ModelPath, string? DataPath, int EmbeddedTensors, int ExternalTensors,
    long ExternalBytes, bool ForcedExternal)
{
    /// <summary>Bytes of the model file (the .onnx protobuf) as written.</summary>
    public long ModelBytes { get; init; }

    /// <summary>A regular file, the null device (a dry run) or a stream (FIFO, character device).</summary>
    public OutputKind Kind { get; init; } = OutputKind.File;

    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Saves a model so that a failure or crash never leaves a half-written or inconsistent output:
/// <list type="bullet">
/// <item>every file is written under a hidden temporary name (<c>.NAME.TOKEN.tmp</c>) in the output
/// folder and renamed into place; the model's rename is the one commit point: before it the old model
/// and its data are untouched, after it the new pair is complete;</item>
/// <item>when the data file already exists, the new data first goes to a uniquely named file
/// (<c>DATA.TOKEN</c>) that the committed model references; only then is it linked to its real name and
/// the model rewritten to reference that name (so an old model never sees new data);</item>
/// <item>SIGINT, SIGTERM and SIGHUP remove the save's temporaries; temporaries a killed save left are
/// removed by the next save of the same output;</item>
/// <item>outputs are checked by file identity against every input (model and data files), links and
/// non-regular targets are refused, except the null device (a dry run) and FIFOs or character
/// devices, which are streamed to directly;</item>
/// <item>a replaced file keeps its permissions and owner.</item>
/// </list>
/// </summary>
public static class ModelWriter
{
    public static SaveResult Save(Model model, string path, SaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new SaveOptions();
        var initializers = model.Graph.SelfAndSubgraphs().SelectMany(g => g.Initializers).ToList();
        foreach (var v in initializers)
            if (v.ConstValue is MissingExternalTensor missing)
                throw new ModelSaveException(path, $"cannot save: data of initializer '{v.Name}' is unavailable ({missing.Reason})");

        var external = ChooseExternal(model, initializers, options, out bool forced);
        var target = OutputTarget.Resolve(model, path, options, needsData: external.Count > 0);
        if (forced && EstimateSize(model, external) > options.ProtobufLimit)
            throw new ModelSaveException(path, $"the graph is larger than the {options.ProtobufLimit}-byte protobuf limit even with all tensors of {options.ExternalThreshold}+ bytes external");
        if (target.Kind == OutputKind.Stream && external.Count > 0)
            throw new ModelSaveException(path, $"is {FileFacts.Of(target.ModelPath).KindText}, which can take one file only, and {external.Count} tensors go to external data; use --embed, or -o /dev/null for a dry run");

        var ordered = initializers.Where(external.Contains).ToList();
        long externalBytes = ordered.Sum(v => v.ConstValue!.ByteLength);
        var result = new SaveResult(target.ModelPath, external.Count > 0 ? target.DataPath : null,
            initializers.Count - external.Count, external.Count, externalBytes, forced);
        try
        {
            return target.Kind == OutputKind.File
                ? SaveToFolder(model, ordered, target, options, result)
                : SaveToDevice(model, ordered, target, options, result);
        }
        catch (OperationCanceledException ex)
        {
            throw new ModelSaveException(path, "interrupted; nothing was written", ex);
        }
        catch (Exception ex) when (ex is not (ModelSaveException or OutOfMemoryException))
        {
            throw new ModelSaveException(path, Describe(ex, target), ex);
        }
    }

    private static SaveResult SaveToFolder(Model model, List<Value> external, OutputTarget target, SaveOptions options, SaveResult result)
    {
        var createdFolders = CreateFolder(target);
        bool committed = false;
        try
        {
            SaveTransaction.RemoveStaleTemporaries(target.Folder, Path.GetFileName(target.ModelPath), target.DataName);
            using var save = new SaveTransaction(target.Folder, options.RenameHook);
            var warnings = new List<string>();
            string modelTemp = save.TempPath(Path.GetFileName(target.ModelPath));
            string? dataInUse = null;
            if (external.Count == 0)
            {
                WriteModelFile(save, model, modelTemp, new Dictionary<Value, long>(), target.DataName, options, target.ExistingModel);
                save.Publish(modelTemp, target.ModelPath);
                committed = true;
            }
            else if (!target.ExistingData.Exists)
            {
                // Nothing references the data name yet: publish the data, then commit with the model.
                string dataTemp = save.TempPath(target.DataName);
                var offsets = WriteDataFile(save, external, dataTemp, options, target.ExistingModel);
                WriteModelFile(save, model, modelTemp, offsets, target.DataName, options, target.ExistingModel);
                save.Publish(dataTemp, target.DataPath);
                try { save.Publish(modelTemp, target.ModelPath); }
                catch { SaveTransaction.Delete(target.DataPath); throw; } // ours and unreferenced: no trace left
                committed = true;
            }
            else
            {
                dataInUse = SavePair(save, model, external, target, options, modelTemp, warnings);
                committed = true;
            }
            if (options.Durable) FileSystemOps.SyncDirectory(target.Folder);
            if (external.Count > 0) SaveTransaction.RemoveStaleAlternates(target.Folder, target.DataName, keep: dataInUse);
            var written = FileFacts.Of(target.ModelPath);
            return result with
            {
                DataPath = dataInUse is null ? result.DataPath : Path.Combine(target.Folder, dataInUse),
                ModelBytes = written.Length,
                Warnings = warnings,
            };
        }
        finally
        {
            if (!committed) RemoveFolders(createdFolders);
        }
    }

    /// <summary>The data file exists: write the new data to <c>DATA.TOKEN</c> and commit a model that
    /// references it; then hard-link it to <c>DATA</c>, commit a model referencing <c>DATA</c> and drop
    /// the alternate name. Every state in between is a consistent pair. Returns the data file name the
    /// published model references when it is not <c>DATA</c> (no hard links here, or a late step failed).</summary>
    private static string? SavePair(SaveTransaction save, Model model, List<Value> external, OutputTarget target,
        SaveOptions options, string modelTemp, List<string> warnings)
    {
        string alternateName = $"{target.DataName}.{save.Token}";
        string alternate = Path.Combine(target.Folder, alternateName);
        var offsets = WriteDataFile(save, external, alternate, options, target.ExistingData);
        WriteModelFile(save, model, modelTemp, offsets, alternateName, options, target.ExistingModel);
        save.Publish(modelTemp, target.ModelPath); // the commit point
        save.Keep(alternate);

        // From here on the save has succeeded; what follows only gives the data file its asked-for name.
        string link = save.TempPath(target.DataName);
        try
        {
            if (!FileSystemOps.TryCreateHardLink(alternate, link))
            {
                warnings.Add($"the file system has no hard links: the model's data is in '{alternateName}'; '{target.DataName}' was left as it was");
                return alternateName;
            }
            save.Track(link);
            save.Publish(link, target.DataPath);
            WriteModelFile(save, model, modelTemp, offsets, target.DataName, options, target.ExistingModel); // the name is free again
            save.Publish(modelTemp, target.ModelPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            warnings.Add($"the model was saved but references its data as '{alternateName}' ({Text.Printable.FirstLine(ex.Message)})");
            return alternateName;
        }
        SaveTransaction.Delete(alternate);
        return null;
    }

    /// <summary>The null device (a dry run: every byte is produced and discarded) or a stream (FIFO,
    /// character device) takes the bytes directly: no temporaries, no rename over the node.</summary>
    private static SaveResult SaveToDevice(Model model, List<Value> external, OutputTarget target, SaveOptions options, SaveResult result)
    {
        Dictionary<Value, long> offsets = [];
        if (external.Count > 0) // only for the null device (refused for streams)
        {
            using var data = new FileStream(target.ModelPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 16);
            offsets = WriteData(external, new CountingStream(data), options);
        }
        using var stream = new FileStream(target.ModelPath, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 16);
        var counter = new CountingStream(stream);
        WriteModelTo(counter, model, offsets, target.DataName);
        counter.Flush();
        return result with { ModelBytes = counter.Count, Kind = target.Kind, DataPath = null };
    }

    private static void WriteModelFile(SaveTransaction save, Model model, string temp, IReadOnlyDictionary<Value, long> offsets,
        string dataName, SaveOptions options, FileFacts permissionsFrom)
    {
        var stream = save.Create(temp, 1 << 16);
        WriteModelTo(stream, model, offsets, dataName);
        stream.Flush(flushToDisk: options.Durable);
        if (permissionsFrom.Exists) FileSystemOps.CopyModeAndOwner(permissionsFrom, temp);
    }

    /// <summary>The model protobuf, with the given tensors as references into <paramref name="dataName"/>.</summary>
    private static void WriteModelTo(Stream stream, Model model, IReadOnlyDictionary<Value, long> offsets, string dataName)
    {
        ModelSerializer.Write(model, stream, v => offsets.TryGetValue(v, out long offset)
            ? TensorProtoPlacement.External(dataName, offset)
            : TensorProtoPlacement.Embedded);
    }

    private static Dictionary<Value, long> WriteDataFile(SaveTransaction save, List<Value> tensors, string path, SaveOptions options, FileFacts permissionsFrom)
    {
        // Unbuffered: tensors are written straight from their (memory-mapped) source in large chunks.
        var stream = save.Create(path, 0);
        var offsets = WriteData(tensors, stream, options);
        if (options.Durable) stream.Flush(flushToDisk: true);
        if (permissionsFrom.Exists) FileSystemOps.CopyModeAndOwner(permissionsFrom, path);
        return offsets;
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

    private static Dictionary<Value, long> WriteData(IEnumerable<Value> tensors, Stream stream, SaveOptions options)
    {
        var offsets = new Dictionary<Value, long>();
        long position = 0;
        var writeback = EarlyWriteback.For(stream, options.Durable);
        foreach (var v in tensors)
        {
            var t = v.ConstValue!;
            int alignment = t.ByteLength >= (1 << 20) ? options.LargeTensorAlignment : 64;
            long aligned = (position + alignment - 1) / alignment * alignment;
            if (aligned > position) stream.Write(new byte[aligned - position]);
            offsets[v] = aligned;
            // An unchanged external tensor is copied file to file by the kernel when it can be.
            if (!(stream is FileStream file && t is MappedTensor { File.Handle: { } handle } mapped && KernelCopy.TryAppend(handle, mapped.Offset, file, t.ByteLength)))
                t.CopyTo(stream);
            position = aligned + t.ByteLength;
            writeback?.Written(position);
        }
        return offsets;
    }

    /// <summary>Creates the output folder (and missing parents), returning those it created, deepest
    /// first, so a failed save can remove them again.</summary>
    private static List<string> CreateFolder(OutputTarget target)
    {
        var missing = new List<string>();
        string? d = target.Folder;
        for (; d is not null && !FileFacts.OfEntry(d).Exists; d = Path.GetDirectoryName(d)) missing.Add(d);
        if (d is not null && FileFacts.Of(d) is { Kind: not FileKind.Directory } blocker)
            throw new ModelSaveException(target.GivenPath, $"cannot create the output folder: '{d}' is {blocker.KindText}, not a folder");
        try { Directory.CreateDirectory(target.Folder); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            RemoveFolders(missing);
            throw new ModelSaveException(target.GivenPath, $"cannot create the output folder '{target.Folder}': {Text.Printable.FirstLine(ex.Message)}", ex);
        }
        return missing;
    }

    private static void RemoveFolders(List<string> created)
    {
        foreach (string d in created)
        {
            try { if (Directory.Exists(d) && !Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>An I/O failure in terms of the output the user named, never a temporary file's name.</summary>
    private static string Describe(Exception ex, OutputTarget target) => ex switch
    {
        UnauthorizedAccessException => $"cannot write into the folder '{target.Folder}': permission denied",
        IOException io when io.HResult is 28 or unchecked((int)0x80070070) => target.Kind == OutputKind.File
            ? $"cannot write: no space left on the device holding '{target.Folder}'"
            : "cannot write: no space left on the device",
        IOException io when io.HResult is 30 => $"cannot write into the folder '{target.Folder}': read-only file system",
        _ => $"cannot write: {Scrub(Text.Printable.FirstLine(ex.Message), target)}",
    };

    /// <summary>Replaces temporary names (<c>.NAME.TOKEN.tmp</c>, <c>DATA.TOKEN</c>) in a system message by the output's name.</summary>
    private static string Scrub(string message, OutputTarget target) =>
        System.Text.RegularExpressions.Regex.Replace(message, @"[^'""\s]*\.[0-9a-f]{12}(\.tmp)?", target.ModelPath);
}

/// <summary>Counts the bytes written through it (for streams that have no position).</summary>
internal sealed class CountingStream(Stream inner) : Stream
{
    public long Count { get; private set; }
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => Count;
    public override long Position { get => Count; set => throw new NotSupportedException(); }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Count += count; }
    public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Count += buffer.Length; }
}
