using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Evaluation;

/// <summary>Where BOS goes in the evaluation windows of a text (<c>--bos</c>); see <see cref="EvalWindows"/> for the rules.</summary>
public enum EvalBosMode
{
    /// <summary><see cref="Window"/> when the tokenizer prepends BOS (or a model has a baked sink prefix), else <see cref="Off"/>.</summary>
    Auto,
    /// <summary>Every window starts with BOS (context only), then text; the text stream itself has no BOS.</summary>
    Window,
    /// <summary>Every paragraph (blank-line separated) of the text is encoded with BOS in front, as llama2.c's run.c encodes a
    /// story; the windows are cut straight from that stream, no BOS added (the MANIFEST's stories260K protocol A).</summary>
    Document,
    /// <summary>No BOS anywhere.</summary>
    Off,
}

/// <summary>How latency is measured: <see cref="Warmup"/> untimed runs, then <see cref="Repetitions"/> timed ones, medians.</summary>
public sealed record LatencySettings
{
    public int Warmup { get; init; } = 1;
    public int Repetitions { get; init; } = 5;
    /// <summary>Tokens decoded one at a time after the prompt (KV-cache models only).</summary>
    public int DecodeTokens { get; init; } = 16;

    public void Validate()
    {
        if (Warmup < 0) throw new EvaluationInputException($"latency warm-up runs must be 0 or more, not {Warmup}");
        if (Repetitions < 1) throw new EvaluationInputException($"latency repetitions must be at least 1, not {Repetitions}");
        if (DecodeTokens < 1) throw new EvaluationInputException($"decode tokens must be at least 1, not {DecodeTokens}");
    }
}

/// <summary>One evaluation: a model (and optionally a reference model) on a text or on token-id windows.</summary>
public sealed record EvalRequest
{
    /// <summary>The .onnx model or its folder.</summary>
    public required string Model { get; init; }
    /// <summary>The reference model (the FP32 original) for KL divergence, top-1 agreement or embedding cosine; null: none.</summary>
    public string? Reference { get; init; }
    public string? Text { get; init; }
    /// <summary>A JSON list of token-id windows (<see cref="Calibration.Text.IdsFile"/>), each fed as given.</summary>
    public string? Ids { get; init; }
    /// <summary>Tokenizer file or folder; default: found beside the model (then beside the reference).</summary>
    public string? Tokenizer { get; init; }
    /// <summary>Window length in positions the model attends over, a BOS or baked prefix included (default: min(context, 512)).</summary>
    public int? Window { get; init; }
    /// <summary>Stream tokens between window starts (default: the text tokens of a window, no overlap).</summary>
    public int? Stride { get; init; }
    /// <summary>Stream tokens taken from the start of the text (specials included); null: all.</summary>
    public int? MaxTokens { get; init; }
    public EvalBosMode Bos { get; init; } = EvalBosMode.Auto;
    /// <summary>Windows of one length run together (1: one at a time).</summary>
    public int BatchSize { get; init; } = 1;
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;
    /// <summary>Measure latency too (null: no).</summary>
    public LatencySettings? Latency { get; init; }
}

/// <summary>A bad evaluation input (a reference of another vocabulary, ids outside it, a text shorter than a window). The
/// message is one line naming the file and the problem.</summary>
public sealed class EvaluationInputException(string message, Exception? inner = null) : Exception(message, inner);
