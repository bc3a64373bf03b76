using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Quantize;

/// <summary>Everything one <c>quantize</c> needs, as the user gave it; recorded in quantization.json.</summary>
public sealed record QuantizeRequest
{
    public required string Model { get; init; }
    /// <summary>The scheme name (<see cref="QuantizationSchemes"/>).</summary>
    public required string Scheme { get; init; }
    /// <summary>A stats.json of analyze on this model (static activation scales).</summary>
    public string? Stats { get; init; }
    public string? Text { get; init; }
    public string? Ids { get; init; }
    public string? Tokenizer { get; init; }
    /// <summary>The folder to write (model.onnx, its data, the companions, quantization.json).</summary>
    public required string Output { get; init; }
    public int? SequenceLength { get; init; }
    public int MaxTokens { get; init; } = 2048;
    public BosMode Bos { get; init; } = BosMode.Auto;
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;
    public QuantizationOptions Options { get; init; } = new();
    /// <summary>Rank the sites by the cost of quantizing each alone (error attribution).</summary>
    public bool Attribute { get; init; }
    /// <summary>Rows of the attribution table printed (all are in quantization.json).</summary>
    public int AttributeTop { get; init; } = 10;
    /// <summary>Measure the quantized model against the original on the calibration windows (on by default when there are windows).</summary>
    public bool Compare { get; init; } = true;
    public bool Force { get; init; }
}
