using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.IO;

/// <summary>How a save reaches its model path.</summary>
public enum OutputKind
{
    /// <summary>A regular file (new or replaced), written through a temporary and an atomic rename.</summary>
    File,
    /// <summary>The null device: everything is written to it (a dry run) and nothing is kept.</summary>
    NullDevice,
    /// <summary>Another character device or a FIFO: the model is streamed to it, with no rename.</summary>
    Stream,
}

/// <summary>
/// Where a save goes, decided before anything is written: the model and data paths, what exists there
/// now (through <c>lstat</c>, so a link or a device node is seen for what it is), and the checks that
/// keep a save from destroying its own inputs. Identity (device + inode) is compared, not path strings,
/// so a symbolic link, a hard link or another spelling of an input is still recognized as that input.
/// </summary>
internal sealed record OutputTarget(string GivenPath, string ModelPath, string Folder, string DataName, string DataPath,
    OutputKind Kind, FileFacts ExistingModel, FileFacts ExistingData)
{
    public static OutputTarget Resolve(Model model, string path, SaveOptions options, bool needsData)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (string.IsNullOrWhiteSpace(path)) throw new ModelSaveException($"'{path}'", "empty output path; give the model file's name");
        if (Path.EndsInDirectorySeparator(path))
            throw new ModelSaveException(path, "names a folder; give the model file's name (for example " + Path.Join(path, "model.onnx") + ")");
        string modelPath;
        try { modelPath = Path.GetFullPath(path); }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ModelSaveException(path, $"invalid path: {Text.Printable.FirstLine(ex.Message)}", ex);
        }
        string folder = Path.GetDirectoryName(modelPath)!;
        string dataName = options.DataFileName ?? Path.GetFileName(modelPath) + ".data";
        if (dataName.Length == 0 || dataName.Contains('/') || dataName.Contains('\\') || dataName is "." or ".." || dataName.Contains('\0'))
            throw new ModelSaveException(path, $"external data file name '{dataName}' must be a plain file name");
        string dataPath = Path.Combine(folder, dataName);
        if (string.Equals(dataPath, modelPath, StringComparison.Ordinal))
            throw new ModelSaveException(path, $"external data file name '{dataName}' is the model file's own name; choose another data file name");

        var entry = FileFacts.OfEntry(modelPath);
        var existing = entry.Kind == FileKind.SymbolicLink ? FileFacts.Of(modelPath) : entry;
        OutputKind kind = ClassifyModel(path, modelPath, entry, existing, options);

        var inputs = InputFiles(model);
        CheckNotAnInput(path, existing, inputs, what: null);
        if (kind == OutputKind.File && existing.Exists && !options.Overwrite)
            throw new OutputExistsException(path, "already exists");
        var dataFacts = FileFacts.Missing;
        if (kind == OutputKind.File && needsData)
        {
            var dataEntry = FileFacts.OfEntry(dataPath);
            if (dataEntry.Kind == FileKind.SymbolicLink)
                throw new ModelSaveException(path, $"its data file '{dataPath}' is a symbolic link ({Target(dataPath)}); the data file must be a regular file: choose another --data-file name or remove the link");
            if (dataEntry.Exists && dataEntry.Kind != FileKind.Regular)
                throw new ModelSaveException(path, $"its data file '{dataPath}' exists and is {dataEntry.KindText}; the data file must be a regular file");
            CheckNotAnInput(path, dataEntry, inputs, what: dataPath);
            if (dataEntry.Exists && !options.Overwrite)
                throw new OutputExistsException(dataPath, "already exists (the model's external data file would replace it)");
            dataFacts = dataEntry;
        }
        return new OutputTarget(path, modelPath, folder, dataName, dataPath, kind, kind == OutputKind.File ? existing : FileFacts.Missing, dataFacts);
    }

    private static OutputKind ClassifyModel(string path, string modelPath, FileFacts entry, FileFacts existing, SaveOptions options)
    {
        switch (entry.Kind)
        {
            case FileKind.Missing:
            case FileKind.Regular:
                return OutputKind.File;
            case FileKind.Directory:
                throw new ModelSaveException(path, "is a directory; give the model file's name (for example " + Path.Join(path, "model.onnx") + ")");
            case FileKind.SymbolicLink:
                // A link to a device (/dev/stdout -> /proc/self/fd/1 -> a pipe) is written through; a link to a
                // file is refused: renaming over it would cut the link, writing through it would change a file
                // that may belong to something else (the hub cache's blobs are shared between snapshots).
                if (existing.IsNullDevice) return OutputKind.NullDevice;
                if (existing.Kind is FileKind.CharacterDevice or FileKind.Fifo) return OutputKind.Stream;
                throw new ModelSaveException(path, $"is a symbolic link ({Target(modelPath)}); give the real path, or remove the link first");
            case FileKind.CharacterDevice when entry.IsNullDevice:
                return OutputKind.NullDevice;
            case FileKind.CharacterDevice:
            case FileKind.Fifo:
                return OutputKind.Stream;
            default:
                throw new ModelSaveException(path, $"exists and is {entry.KindText}; the output must be a regular file (or /dev/null for a dry run)");
        }
    }

    /// <summary>Every file the model was read from and still reads from: the identity recorded when it was
    /// opened and the identity its path names now (it may have been replaced since).</summary>
    private static List<(string Path, FileIdentity Identity, bool IsSource)> InputFiles(Model model)
    {
        var inputs = new List<(string, FileIdentity, bool)>();
        void Add(string path, FileIdentity? recorded, bool isSource)
        {
            if (recorded is { } r) inputs.Add((path, r, isSource));
            if (FileFacts.Of(path).Identity is { } now && now != recorded) inputs.Add((path, now, isSource));
        }
        if (model.SourcePath is { } source) Add(source, model.SourceIdentity, true);
        foreach (var file in model.ExternalFiles.Values) Add(file.FullPath, file.Identity, false);
        return inputs;
    }

    private static void CheckNotAnInput(string path, FileFacts output, List<(string Path, FileIdentity Identity, bool IsSource)> inputs, string? what)
    {
        if (output.Identity is not { } id) return;
        foreach (var (input, identity, isSource) in inputs)
        {
            if (identity != id) continue;
            string which = isSource
                ? $"the file the model was loaded from ('{input}')"
                : $"an input of this model (its external data file '{input}')";
            throw new ModelSaveException(path, what is null
                ? $"is {which}; a save may not replace its own input: choose another output path"
                : $"its data file '{what}' is {which}; choose another output folder or data file name");
        }
    }

    private static string Target(string link)
    {
        string? target = null;
        try { target = new FileInfo(link).LinkTarget; } catch (IOException) { }
        return target is null ? "unreadable target" : $"to '{target}'";
    }
}
