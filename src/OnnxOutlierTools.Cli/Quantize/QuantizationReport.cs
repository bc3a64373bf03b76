using System.Text.Json;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Reporting.Json;

namespace OnnxOutlierTools.Cli.Quantize;

/// <summary><c>quantization.json</c> beside the quantized model, schema version 1: what was asked (<c>request</c> with every
/// option, the command line, the calibration run the statistics or windows came from), the scheme's settings, counts per rule,
/// every quantized site (linears, activation scale and range, weight scale range), every linear left in float with the reason,
/// the sizes, the comparison with the original (KL, top-1, perplexity of both) and, with --attribute, every site's cost.</summary>
public static class QuantizationReport
{
    public const int SchemaVersion = 1;
    public const string FormatName = "onnx-outliers-quantization";

    public static void Write(string path, QuantizeRequest request, QuantizeOutcome outcome, RunSettings? calibration, string? commandLine)
    {
        var result = outcome.Result;
        var document = new
        {
            schemaVersion = SchemaVersion,
            format = FormatName,
            commandLine,
            toolVersion = typeof(QuantizationReport).Assembly.GetName().Version?.ToString(),
            finished = DateTimeOffset.UtcNow,
            request,
            calibration,
            scheme = result.Scheme,
            settings = result.Settings,
            counts = result.Counts,
            linears = new { quantized = result.LinearCount, byRole = outcome.Selection.CountsByRole(), sites = result.Sites.Count },
            sites = result.Sites.Select(s => new { id = s.Id, block = s.Block, kind = s.Kind, linears = s.Linears, activation = s.Activation, weights = s.Weights, figures = s.Figures }),
            skipped = result.Skipped.Select(s => new { weight = s.Weight, block = s.Block, role = s.Role, reason = s.Reason }),
            size = new { originalBytes = outcome.OriginalBytes, quantizedBytes = outcome.QuantizedBytes },
            comparison = outcome.Divergence,
            attribution = outcome.Attribution is not { } a ? null : new
            {
                method = "each site quantized alone; mean next-token KL(FP32 || quantized) on the calibration windows, most costly first",
                windows = a.Windows,
                positions = a.Positions,
                sites = a.Sites,
            },
        };
        AtomicTextFile.Write(path, JsonSerializer.Serialize(document, ReportingJson.Options), overwrite: false);
    }
}
