namespace OnnxOutlierTools.Mitigation;

/// <summary>A mitigation cannot act on what it was given (no findings to act on, an FFN form it cannot rescale, statistics
/// of another model): bad input, one line for the user (the CLI exits with code 2).</summary>
public sealed class MitigationInputException(string message, Exception? inner = null) : Exception(message, inner);
