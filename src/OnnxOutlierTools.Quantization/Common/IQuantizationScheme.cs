using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Quantization.Common;

/// <summary>One way of quantizing a model (W8A8 static, W8A8 dynamic, int4 RTN, int4 AWQ, ...). A scheme edits
/// <see cref="QuantizationInput.Model"/> in place: it selects its linears with <see cref="LinearSelection"/> (or reads
/// <see cref="QuantizationInput.Selection"/>), replaces weights and inserts nodes through <c>GraphEditor</c> with a
/// <c>NodeOrigin</c> naming the scheme, and says what it did. Bad input (no statistics where the scheme needs them, a
/// weight type it cannot take) throws <see cref="QuantizationInputException"/> with one line for the user.
/// <para>The CLI (<c>quantize --scheme NAME</c>) finds schemes in <see cref="QuantizationSchemes"/>; a new scheme is one
/// class implementing this interface plus one <c>Register</c> line there.</para></summary>
public interface IQuantizationScheme
{
    /// <summary>The name the CLI takes (<c>--scheme</c>): lower-case words joined by '-' (<c>w8a8-static</c>).</summary>
    string Name { get; }

    /// <summary>One sentence for <c>--help</c> and the report.</summary>
    string Description { get; }

    /// <summary>What the scheme reads from calibration: nothing, statistics (static activation scales) or captured
    /// activations on calibration windows (AWQ's search). The CLI refuses a run without what is needed.</summary>
    CalibrationNeed Needs { get; }

    /// <summary>Quantizes <see cref="QuantizationInput.Model"/> in place and reports every site.</summary>
    QuantizationResult Quantize(QuantizationInput input);
}

public enum CalibrationNeed
{
    /// <summary>Weights only (RTN, dynamic activations).</summary>
    None,
    /// <summary>Per-point activation statistics (<see cref="QuantizationInput.Statistics"/>): static activation scales.</summary>
    Statistics,
    /// <summary>Calibration windows run through the model (<see cref="QuantizationInput.Windows"/>): activation-aware searches.</summary>
    Windows,
}

/// <summary>Options every scheme receives; each reads those it understands and records them in its result's
/// <see cref="QuantizationResult.Settings"/>. Checked at construction of the CLI request, not here.</summary>
public sealed record QuantizationOptions
{
    /// <summary>Also quantize the LM head (excluded by default: it is the most sensitive linear, and often tied to the embedding).</summary>
    public bool IncludeLmHead { get; init; }
    /// <summary>Also quantize the token embedding table (weight-only: int8 or int4 table dequantized before the Gather).</summary>
    public bool IncludeEmbedding { get; init; }
    /// <summary>Also quantize the attention matmuls of decomposed attention (Q K^T and P V), where the scheme supports it.</summary>
    public bool Attention { get; init; }
    /// <summary>Static activation scales from the P-th percentile (0 &lt; P &lt;= 100) of the per-token max |x| instead of the max; null: the max.</summary>
    public double? Percentile { get; init; }
    /// <summary>int4: weights per block of this many input channels (32, 64, 128).</summary>
    public int BlockSize { get; init; } = 32;
    /// <summary>int4 MatMulNBits: accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 activations per block).</summary>
    public int AccuracyLevel { get; init; }
    /// <summary>int4: com.microsoft MatMulNBits (default) or the opset-21 blocked DequantizeLinear form.</summary>
    public Int4.Int4Format Int4Format { get; init; } = Int4.Int4Format.MatMulNBits;
    /// <summary>int4: symmetric (zero point 8 implied) or asymmetric (per-block zero points).</summary>
    public bool Symmetric { get; init; } = true;
    /// <summary>Restrict the scheme to these sites (<see cref="QuantizationSite.Id"/>); null: every selected site. Error attribution
    /// quantizes one site at a time through this.</summary>
    public IReadOnlySet<string>? OnlySites { get; init; }
}

/// <summary>What a scheme works on.</summary>
public sealed record QuantizationInput
{
    /// <summary>The model to edit in place (the caller saves it).</summary>
    public required Model Model { get; init; }
    /// <summary>The structure recognized on <see cref="Model"/> (its roles are values of this model's graph).</summary>
    public required ModelStructure Structure { get; init; }
    public QuantizationOptions Options { get; init; } = new();
    /// <summary>Activation statistics of this model on calibration text (analyze's stats.json, or a calibration run now); needed
    /// when <see cref="IQuantizationScheme.Needs"/> is <see cref="CalibrationNeed.Statistics"/>.</summary>
    public CalibrationStatistics? Statistics { get; init; }
    /// <summary>Calibration windows (token ids, fed as calibration feeds them); needed for <see cref="CalibrationNeed.Windows"/>.</summary>
    public IReadOnlyList<int[]>? Windows { get; init; }
    /// <summary>Notes for the user (one line each).</summary>
    public TextWriter Log { get; init; } = TextWriter.Null;

    /// <summary>The linears the options select (block linears; the head and embedding when asked).</summary>
    public LinearSelection Selection => _selection ??= LinearSelection.Select(Structure, Options);
    private LinearSelection? _selection;
}

/// <summary>What a scheme did: one line per site, the sites it left with the reason, and every setting that decided the
/// numbers (written to quantization.json as they are).</summary>
public sealed record QuantizationResult
{
    public required string Scheme { get; init; }
    public required IReadOnlyList<QuantizedSiteReport> Sites { get; init; }
    public IReadOnlyList<SkippedLinear> Skipped { get; init; } = [];
    /// <summary>Settings as name -> value (numbers, strings, booleans), e.g. weights "int8 symmetric per output channel".</summary>
    public IReadOnlyDictionary<string, object?> Settings { get; init; } = new Dictionary<string, object?>();
    /// <summary>Nodes inserted per rule (the pass counts), e.g. "quantize-linear" -> 12.</summary>
    public IReadOnlyDictionary<string, int> Counts { get; init; } = new Dictionary<string, int>();

    public int LinearCount => Sites.Sum(s => s.Linears.Count);
}

/// <summary>One quantized site: its id, the linears (weight initializer names) and how its activation was quantized (null for
/// weight-only schemes), e.g. "static per-tensor, scale 0.0183 (max |x| 2.32)".</summary>
public sealed record QuantizedSiteReport(string Id, int? Block, string Kind, IReadOnlyList<string> Linears, string? Activation, string Weights)
{
    /// <summary>Scalar facts of the site (activation scale, max |x|, weight scale range, ...).</summary>
    public IReadOnlyDictionary<string, double> Figures { get; init; } = new Dictionary<string, double>();
}

/// <summary>A bad input a scheme cannot quantize (one line for the user; the CLI exits with code 2).</summary>
public sealed class QuantizationInputException(string message, Exception? inner = null) : Exception(message, inner);
