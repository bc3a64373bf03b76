using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>One residual-stream point of the massive-activation plot: where it sits on the block axis, its three largest
/// |x| (the point's global top-k list, as Sun et al. plot the top-3 magnitudes of a layer's hidden states) and its median
/// |x| (the median over tokens of each token's median |x|).</summary>
internal sealed record StreamSample(ProbePoint Point, double X, IReadOnlyList<double> Top, double Median);

internal static class StreamProfile
{
    /// <summary>The x of a point on the block axis: the embedding at -1, block b's output at b, and the residual sums of
    /// block b spread between b - 1 and b in graph order (a pre-norm block's attention midpoint at b - 0.5).</summary>
    public static IReadOnlyList<StreamSample> Of(CalibrationStatistics statistics, ProbeKind kind)
    {
        var points = statistics.Manifest.Points
            .Where(p => p.Kind == kind || p.Kind == ProbeKind.Embedding)
            .Where(p => statistics[p.Id] is { Tokens: > 0 })
            .ToList();
        if (!points.Any(p => p.Kind == kind)) return [];
        var samples = new List<StreamSample>();
        foreach (var group in points.GroupBy(p => p.Block ?? -1))
        {
            var inBlock = group.ToList();
            for (int j = 0; j < inBlock.Count; j++)
            {
                var point = inBlock[j];
                double x = point.Kind switch
                {
                    ProbeKind.Embedding => -1,
                    ProbeKind.ResidualSum => group.Key - 1 + (j + 1.0) / (inBlock.Count + 1),
                    _ => group.Key,
                };
                var stats = statistics[point.Id]!;
                samples.Add(new StreamSample(point, x, stats.Top.Take(3).Select(e => e.Abs).ToList(), stats.TokenMedianAbs.Median));
            }
        }
        return samples.OrderBy(s => s.X).ToList();
    }

    public static string BlockLabel(double x) => x switch
    {
        -1 => "emb",
        _ when x == Math.Round(x) && x >= 0 => ((int)x).ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => "",
    };
}
