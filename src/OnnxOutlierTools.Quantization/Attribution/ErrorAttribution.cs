using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Quantization.Attribution;

/// <summary>The cost of quantizing one site alone: next-token KL(FP32 || model with only this site quantized), its max over
/// positions, top-1 agreement, and the site's rank (1: the most costly).</summary>
public sealed record SiteAttribution(int Rank, string Site, int? Block, string Kind, IReadOnlyList<string> Linears, double MeanKl, double MaxKl, double Top1Agreement);

/// <summary>Every site's cost, most costly first, on <see cref="Windows"/> calibration windows (<see cref="Positions"/>
/// positions compared).</summary>
public sealed record AttributionResult(string Scheme, IReadOnlyList<SiteAttribution> Sites, int Windows, long Positions);

/// <summary>Error attribution (issue 10, item 3): which sites break a scheme. For each site (the linears reading one input
/// tensor; with <see cref="QuantizationOptions.Attention"/> also each attention matmul) the model is quantized with that site
/// alone (<see cref="QuantizationOptions.OnlySites"/>), held in memory (<see cref="InMemoryModel"/>: nothing is written, the
/// float weights stay in the original data file) and run on ONNX Runtime against the unmodified model on the calibration
/// windows; the sites are ranked by mean next-token KL (<see cref="OutputDivergence"/>, float64). One session per site: the
/// cost is sites x windows forward passes of the model, twice.</summary>
public static class ErrorAttribution
{
    public static AttributionResult Run(string modelPath, IQuantizationScheme scheme, QuantizationOptions options, CalibrationStatistics? statistics,
        IReadOnlyList<int[]> windows, SessionSettings? settings = null, IProgress<(int Done, int Total, string Site)>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        ArgumentNullException.ThrowIfNull(windows);
        if (windows.Count == 0) throw new QuantizationInputException($"{modelPath}: error attribution needs calibration windows (--text FILE or --ids FILE.json)");
        settings ??= new SessionSettings { Device = ExecutionDevice.Cpu };
        var sites = SiteIds(modelPath, options);
        using var reference = SessionFactory.Open(modelPath, settings);
        var rows = new List<SiteAttribution>();
        long positions = 0;
        for (int i = 0; i < sites.Count; i++)
        {
            var (id, block, kind, linears) = sites[i];
            progress?.Report((i, sites.Count, id));
            using var model = ModelReader.Load(modelPath);
            var structure = StructureRecognizer.Recognize(model).Structure!;
            scheme.Quantize(new QuantizationInput
            {
                Model = model, Structure = structure, Statistics = statistics, Windows = windows,
                Options = options with { OnlySites = new HashSet<string>(StringComparer.Ordinal) { id } },
            });
            using var session = InMemoryModel.Open(model, settings);
            var report = OutputDivergence.Measure(reference, session, windows, new DivergenceOptions { TokenInput = structure.Inputs.InputIds?.Name, BatchSize = 4 });
            positions = report.Positions;
            rows.Add(new SiteAttribution(0, id, block, kind, linears, report.MeanKl, report.MaxKl, report.Top1Agreement));
        }
        progress?.Report((sites.Count, sites.Count, ""));
        var ranked = rows.OrderByDescending(r => double.IsNaN(r.MeanKl) ? double.PositiveInfinity : r.MeanKl).Select((r, i) => r with { Rank = i + 1 }).ToArray();
        return new AttributionResult(scheme.Name, ranked, windows.Count, positions);
    }

    /// <summary>The sites one at a time: block linears by input (and the head when asked), the attention matmuls when asked.</summary>
    private static List<(string Id, int? Block, string Kind, IReadOnlyList<string> Linears)> SiteIds(string modelPath, QuantizationOptions options)
    {
        using var model = ModelReader.Load(modelPath);
        var recognition = StructureRecognizer.Recognize(model);
        var structure = recognition.Structure ?? throw new QuantizationInputException($"{modelPath}: no transformer blocks recognized ({recognition.Message}), so no sites to attribute");
        var list = LinearSelection.Select(structure, options).Sites
            .Select(s => (s.Id, s.Block, W8A8Pass.SiteKindName(s.Kind), (IReadOnlyList<string>)s.Linears.Select(l => $"{l.Role} {l.Weight.Name}").ToArray())).ToList();
        if (options.Attention)
            list.AddRange(AttentionMatMuls.Find(structure).Found.Select(a => (a.Id, (int?)a.Block, a.Kind, (IReadOnlyList<string>)[])));
        return list;
    }
}
