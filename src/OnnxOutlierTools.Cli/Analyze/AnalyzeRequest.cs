using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Analyze;

/// <summary>Everything one <c>analyze</c> (or <c>probe</c>-and-run) needs, as the user gave it; recorded in report.json.</summary>
public sealed record AnalyzeRequest
{
    public required string Model { get; init; }
    /// <summary>Calibration text (UTF-8); exactly one of <see cref="Text"/> and <see cref="Ids"/>.</summary>
    public string? Text { get; init; }
    /// <summary>Pre-tokenized ids (JSON: an array of ints, or an array of arrays).</summary>
    public string? Ids { get; init; }
    public string? Tokenizer { get; init; }
    public required string Output { get; init; }
    /// <summary>Window length; null: min(context, 512).</summary>
    public int? SequenceLength { get; init; }
    public int MaxTokens { get; init; } = 4096;
    public BosMode Bos { get; init; } = BosMode.Auto;
    public int BatchSize { get; init; } = 1;
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;
    public ProbeSettings Probes { get; init; } = new();
    public AnalysisSettings Analysis { get; init; } = new();
    public bool Force { get; init; }
}
