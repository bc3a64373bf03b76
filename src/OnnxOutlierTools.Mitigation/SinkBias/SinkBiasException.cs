namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>The sink bias cannot be applied to this model (no recognized attention, an attention form or cache layout
/// it cannot rewrite, a merged If decoder, a bad prefix). The message is one line naming the model and the problem;
/// the CLI maps it to exit code 2 (bad input).</summary>
public sealed class SinkBiasException(string message, Exception? inner = null) : Exception(message, inner);
