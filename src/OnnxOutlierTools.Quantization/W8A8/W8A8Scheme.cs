using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Quantization.Common;

namespace OnnxOutlierTools.Quantization.W8A8;

/// <summary>W8A8 (SCIENCE.md 3): int8 symmetric weights per output channel and int8 activations at every selected linear's
/// input, per-tensor static (<c>w8a8-static</c>, scales from calibration statistics) or per-token dynamic (<c>w8a8-dynamic</c>,
/// scales computed in the graph). With <see cref="QuantizationOptions.Attention"/> the Q K^T and P V matmuls of decomposed
/// attention are quantized too (static: their inputs' calibrated ranges, the probabilities' range fixed at 1; dynamic: per row
/// of A and per column of B).</summary>
public sealed class W8A8Scheme(ActivationMode mode) : IQuantizationScheme
{
    public const string StaticName = "w8a8-static", DynamicName = "w8a8-dynamic";

    public ActivationMode Mode { get; } = mode;

    public string Name => Mode == ActivationMode.StaticPerTensor ? StaticName : DynamicName;

    public string Description => Mode == ActivationMode.StaticPerTensor
        ? "int8 weights per output channel, int8 activations per tensor with calibrated static scales (QDQ; ORT fuses to int8 kernels)"
        : "int8 weights per output channel, int8 activations per token with scales computed in the graph (MatMulInteger)";

    public CalibrationNeed Needs => Mode == ActivationMode.StaticPerTensor ? CalibrationNeed.Statistics : CalibrationNeed.None;

    /// <summary>The tensors whose statistics a static run needs beyond the default probe points (the linear inputs): every
    /// selected site's input, the head's included. The CLI probes them by name when it calibrates. (The attention matmuls'
    /// inputs are [B, H, S, D], which probe points do not take: their max |x| is measured on <see cref="QuantizationInput.Windows"/>.)</summary>
    public static IReadOnlyList<string> ExtraTensors(Structure.Roles.ModelStructure structure, QuantizationOptions options) =>
        LinearSelection.Select(structure, options).Sites.Select(s => s.Input.Name).Distinct(StringComparer.Ordinal).ToArray();

    public QuantizationResult Quantize(QuantizationInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        string model = input.Model.SourcePath ?? input.Model.Graph.Name;
        var selection = input.Selection;
        var only = input.Options.OnlySites;
        var sites = selection.Sites.Where(s => only is null || only.Contains(s.Id)).ToArray();
        var (attention, attentionNotFound) = input.Options.Attention ? AttentionMatMuls.Find(input.Structure) : ([], []);
        attention = attention.Where(a => only is null || only.Contains(a.Id)).ToArray();
        var embedding = only is null || only.Contains("embedding") ? selection.Embedding : null;
        if (sites.Length == 0 && attention.Count == 0 && embedding is null)
        {
            string why = selection.Skipped.Count == 0 ? "" : $" (skipped: {string.Join("; ", selection.Skipped.Take(3))})";
            throw new QuantizationInputException(only is null
                ? $"{model}: no recognized block linear to quantize (a MatMul or Gemm with an initializer weight){why}"
                : $"{model}: none of the sites {string.Join(", ", only)} is in this model");
        }
        long opset = input.Model.OpsetVersion("") ?? 1;
        if (opset < QuantOps.MinimumOpset)
            throw new QuantizationInputException($"{model}: default-domain opset {opset}; per-channel DequantizeLinear (axis) needs opset {QuantOps.MinimumOpset} or later");
        foreach (var note in attentionNotFound) input.Log.WriteLine($"note: --attention: {note}");

        var ranges = new Dictionary<string, ActivationRange>(StringComparer.Ordinal);
        if (Mode == ActivationMode.StaticPerTensor)
        {
            var statistics = input.Statistics ?? throw new QuantizationInputException($"{model}: {StaticName} needs calibration statistics (--stats stats.json or --text FILE)");
            foreach (var site in sites) ranges[site.Input.Name] = Range(statistics, site.Input.Name, site.Id, input.Options.Percentile, model);
            var measured = AttentionRanges(input, attention, model);
            foreach (var matmul in attention)
                for (int i = 0; i < 2; i++)
                {
                    string name = matmul.Node.Input(i)!.Name;
                    // Softmax probabilities lie in [0, 1]: their range is known without calibration.
                    ranges[name] = i == 0 && matmul.ProbabilityInput ? new ActivationRange(1, 1, null) : new ActivationRange(measured[name], measured[name], null);
                }
        }

        var pass = new W8A8Pass(Name, input.Structure, Mode, sites, ranges, embedding, attention);
        var result = pass.Run(new PassContext(input.Model));
        return new QuantizationResult
        {
            Scheme = Name,
            Sites = pass.Reports,
            Skipped = selection.Skipped.Concat(attentionNotFound.Select(n => new SkippedLinear("(attention matmuls)", null, "attention", n))).ToArray(),
            Counts = result.Counts,
            Settings = new Dictionary<string, object?>
            {
                ["weights"] = "int8 symmetric per output channel: s = max|w| / 127 (fp64, stored fp32), q = round-half-even(w / s) in [-127, 127]",
                ["activations"] = Mode == ActivationMode.StaticPerTensor
                    ? "int8 per tensor, static: s = range / 127, zero point 0 (QuantizeLinear/DequantizeLinear)"
                    : "int8 per token, dynamic: s = max|x| over the channels / 127 (at least 1e-30), q = Cast(Clip(Round(x / s), -127, 127)); MatMulInteger, y = acc * s_token * s_channel",
                ["range"] = Mode == ActivationMode.StaticPerTensor ? (input.Options.Percentile is double p ? $"p{p} of the per-token max |x|" : "max |x|") : null,
                ["percentile"] = input.Options.Percentile,
                ["includeLmHead"] = input.Options.IncludeLmHead,
                ["includeEmbedding"] = input.Options.IncludeEmbedding,
                ["attention"] = input.Options.Attention,
                ["opset"] = opset,
            },
        };
    }

    private static ActivationRange Range(Probes.CalibrationStatistics statistics, string tensor, string site, double? percentile, string model)
    {
        var point = ActivationRanges.PointOf(statistics, tensor)
            ?? throw new QuantizationInputException($"{model}: the calibration statistics have no probe point for '{tensor}' (site {site}); calibrate with --text FILE (it probes every tensor the scheme needs)");
        return new ActivationRange(ActivationRanges.Range(point, percentile), ActivationRanges.AbsMax(point), percentile);
    }

    /// <summary>max |x| of the attention matmuls' activation inputs (Q, K^T, V) on the calibration windows (the max, whatever
    /// --percentile says: these tensors have no per-token histogram).</summary>
    private static IReadOnlyDictionary<string, double> AttentionRanges(QuantizationInput input, IReadOnlyList<AttentionMatMul> attention, string model)
    {
        var names = attention.SelectMany(m => Enumerable.Range(0, 2).Where(i => !(i == 0 && m.ProbabilityInput)).Select(i => m.Node.Input(i)!.Name)).Distinct(StringComparer.Ordinal).ToArray();
        if (names.Length == 0) return new Dictionary<string, double>();
        if (input.Windows is not { Count: > 0 } windows || input.Model.SourcePath is not { } path)
            throw new QuantizationInputException($"{model}: {StaticName} --attention measures the attention matmuls' ranges on calibration windows: give --text FILE or --ids FILE.json");
        return TensorAbsMax.Measure(path, names, windows, input.Structure.Inputs.InputIds?.Name);
    }
}
