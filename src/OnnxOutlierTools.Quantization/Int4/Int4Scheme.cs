using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Quantization.Int4.Awq;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>int4 weight-only as a <c>quantize --scheme</c>: <c>int4-rtn</c> (round-to-nearest, <see cref="Int4Quantizer"/>) and
/// <c>int4-awq</c> (activation-aware scales searched on the calibration windows and folded exactly first,
/// <see cref="AwqQuantizer"/>), in the MatMulNBits or the opset-21 blocked DequantizeLinear form.</summary>
public sealed class Int4Scheme(bool activationAware) : IQuantizationScheme
{
    public const string RtnName = "int4-rtn", AwqName = "int4-awq";

    public bool ActivationAware { get; } = activationAware;

    public string Name => ActivationAware ? AwqName : RtnName;

    public string Description => ActivationAware
        ? "int4 weights per block, AWQ per-input-channel scales searched on calibration activations and folded before rounding"
        : "int4 weights per block, round-to-nearest (MatMulNBits, or blocked DequantizeLinear at opset 21)";

    public CalibrationNeed Needs => ActivationAware ? CalibrationNeed.Windows : CalibrationNeed.None;

    public QuantizationResult Quantize(QuantizationInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var options = input.Options;
        string display = input.Model.SourcePath ?? input.Model.Graph.Name;
        // One site at a time (error attribution) is not mapped to int4's weight filter yet: refuse rather than quantize all.
        if (options.OnlySites is not null)
            throw new QuantizationInputException($"{display}: {Name} quantizes every block linear; per-site quantization (--attribute) is available for the W8A8 schemes");
        Int4Settings settings;
        try
        {
            settings = new Int4Settings(options.Int4Format, options.BlockSize, options.Symmetric, options.AccuracyLevel, options.IncludeLmHead);
        }
        catch (ArgumentException ex) { throw new QuantizationInputException($"{display}: {ex.Message.Split(" (Parameter")[0]}", ex); }
        Int4Report report;
        AwqReport? awq = null;
        try
        {
            if (ActivationAware)
            {
                var windows = input.Windows ?? throw new QuantizationInputException($"{display}: int4-awq needs calibration windows (--text or --ids)");
                (awq, report) = AwqQuantizer.Quantize(input.Model, windows, settings, display: display);
            }
            else report = Int4Quantizer.Quantize(input.Model, settings, input.Structure, display);
        }
        catch (Int4QuantizationException ex) { throw new QuantizationInputException(ex.Message, ex); }
        foreach (string line in awq?.Skipped ?? []) input.Log.WriteLine($"note: awq: {line}");
        var settingsTable = new Dictionary<string, object?>
        {
            ["weights"] = settings.ToString(),
            ["format"] = settings.Format == Int4Format.MatMulNBits ? "MatMulNBits" : "DequantizeLinear-21",
            ["blockSize"] = settings.BlockSize,
            ["symmetric"] = settings.Symmetric,
            ["accuracyLevel"] = settings.AccuracyLevel,
            ["activations"] = "float (weight-only)",
        };
        if (awq is not null) settingsTable["awq"] = string.Join(", ", awq.Sites.Select(s => $"{s.Site} alpha {s.Alpha:G3}"));
        return new QuantizationResult
        {
            Scheme = Name,
            Sites = report.Linears.Where(l => l.Quantized)
                .Select(l => new QuantizedSiteReport(l.Role, null, "int4", [l.Weight], null, settings.ToString())).ToList(),
            Skipped = report.Linears.Where(l => !l.Quantized).Select(l => new SkippedLinear(l.Weight, null, l.Role, l.Reason ?? "kept in float")).ToList(),
            Settings = settingsTable,
            Counts = report.Pass.Counts,
        };
    }
}
