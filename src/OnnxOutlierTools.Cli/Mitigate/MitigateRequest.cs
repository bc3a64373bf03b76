using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Mitigate;

/// <summary>Everything one <c>mitigate</c> needs, as the user gave it; recorded in mitigation.json.</summary>
public sealed record MitigateRequest
{
    public required string Model { get; init; }
    /// <summary>A stats.json of analyze (then --text/--ids only feed the proof; without them the text the stats name).</summary>
    public string? Stats { get; init; }
    public string? Text { get; init; }
    public string? Ids { get; init; }
    public string? Tokenizer { get; init; }
    /// <summary>The folder to write (model.onnx, its data, the companions, mitigation.json).</summary>
    public required string Output { get; init; }
    public int? SequenceLength { get; init; }
    public int MaxTokens { get; init; } = 2048;
    public BosMode Bos { get; init; } = BosMode.Auto;
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;
    /// <summary>Calibration windows the proof runs (the first ones).</summary>
    public int ProofWindows { get; init; } = 2;
    public AnalysisSettings Analysis { get; init; } = new();
    /// <summary>Re-probe the output and print outlier statistics before and after (on by default).</summary>
    public bool CompareStatistics { get; init; } = true;
    public bool Force { get; init; }
}
