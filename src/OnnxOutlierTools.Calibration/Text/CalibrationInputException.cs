namespace OnnxOutlierTools.Calibration.Text;

/// <summary>A calibration input (tokenizer file, text, ids file, setting) that cannot be used. The message
/// is one line, "&lt;path&gt;: &lt;problem&gt;", fit to show a user as is.</summary>
public class CalibrationInputException(string path, string problem, Exception? inner = null)
    : Exception($"{path}: {problem}", inner)
{
    public string FilePath { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>No tokenizer was given and none was found beside the model; the message names where it looked.</summary>
public sealed class TokenizerNotFoundException(string path, string problem) : CalibrationInputException(path, problem);
