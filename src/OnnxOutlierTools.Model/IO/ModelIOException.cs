namespace OnnxOutlierTools.IO;

/// <summary>A model file could not be loaded. <see cref="Exception.Message"/> is one line that names
/// the file and the problem, fit to show a user as is.</summary>
public sealed class ModelLoadException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>A model could not be saved; nothing was written at the destination.</summary>
public class ModelSaveException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>A save would replace an existing file and <see cref="SaveOptions.Overwrite"/> was not set.
/// <see cref="ModelSaveException.FilePath"/> names the file that exists (the model or its data file).</summary>
public sealed class OutputExistsException(string path, string problem) : ModelSaveException(path, problem);
