using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Run;

/// <summary>What <c>onnx-outliers run</c> was asked to do.</summary>
public sealed record RunRequest
{
    /// <summary>The model file or folder (for <c>--demo</c>: the bundled planted model).</summary>
    public required string Model { get; init; }
    /// <summary>Calibration and evaluation text (UTF-8).</summary>
    public required string Text { get; init; }
    public string? Tokenizer { get; init; }
    /// <summary>The folder the run writes (staged beside it, moved into place at the end).</summary>
    public required string Output { get; init; }
    /// <summary>Quantization schemes applied to the original and to the mitigated model.</summary>
    public IReadOnlyList<string> Schemes { get; init; } = RunRecipe.DefaultSchemes;
    /// <summary>Mitigation steps by name (fold-norms, smooth, sink-bias, fp16-safe, clip-ma); null: the default recipe.</summary>
    public IReadOnlyList<string>? Recipe { get; init; }
    /// <summary>Calibration token budget (analyze, mitigate, quantize).</summary>
    public int CalibrationTokens { get; init; } = 2048;
    /// <summary>Evaluation token budget (perplexity, KL, top-1 windows).</summary>
    public int EvalTokens { get; init; } = 2048;
    /// <summary>Window length (calibration and evaluation); null: the model's context, at most 256 for calibration.</summary>
    public int? SequenceLength { get; init; }
    /// <summary>Measure CPU latency of every model (prompt and decoding).</summary>
    public bool Latency { get; init; } = true;
    /// <summary>Where every step runs (default the CPU: the table's latency is CPU latency).</summary>
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Cpu;
    public bool Force { get; init; }
}
