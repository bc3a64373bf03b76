using OnnxOutlierTools.Probes;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Series;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>The standard massive-activation picture (Sun et al. 2024, Fig. 1): per block, the three largest |x| of the
/// residual stream and its median, on a log scale. Massive activations show as top-1..3 lines jumping orders of magnitude
/// above a flat median at the block where they are born.</summary>
internal static class MassiveActivationPlot
{
    public const int Width = 900, Height = 420;

    /// <summary>Null when the statistics have no point of <paramref name="kind"/>.</summary>
    public static PlotModel? Build(CalibrationStatistics statistics, ProbeKind kind, double absoluteThreshold = 100)
    {
        var samples = StreamProfile.Of(statistics, kind);
        if (samples.Count == 0) return null;
        string what = kind == ProbeKind.ResidualSum ? "residual sums (before each norm)" : "residual stream (block outputs)";
        var model = PlotStyle.Model($"Largest |x| per block: {what}", "top-1, top-2, top-3 |x| (distinct position/channel sites over all windows) and the median |x|");
        var legend = PlotStyle.Legend();
        legend.LegendItemOrder = OxyPlot.Legends.LegendItemOrder.Reverse; // drawn top-3 first so top-1 lies on top; listed top-1 first
        model.Legends.Add(legend);

        double maxX = samples.Max(s => s.X);
        var x = PlotStyle.LinearX("block (emb = embedding output)");
        x.Minimum = -1.4;
        x.Maximum = maxX + 0.4;
        x.MajorStep = maxX > 40 ? 4 : maxX > 20 ? 2 : 1;
        x.MinorStep = 1;
        x.LabelFormatter = StreamProfile.BlockLabel;
        model.Axes.Add(x);

        var all = samples.SelectMany(s => s.Top.Append(s.Median)).ToList();
        double top = all.Where(double.IsFinite).DefaultIfEmpty(1).Max();
        bool showThreshold = top >= absoluteThreshold / 4;
        bool showFp16 = top >= 65504.0 / 64;
        var (min, max) = PlotStyle.LogRange(all.Concat(showThreshold ? [absoluteThreshold] : []).Concat(showFp16 ? [65504.0] : []));
        var y = PlotStyle.LogY("|x| (log scale)");
        y.Minimum = min;
        y.Maximum = max;
        model.Axes.Add(y);

        var median = Line("median |x|", PlotStyle.Blue, MarkerType.Diamond, LineStyle.Dash);
        foreach (var s in samples)
            if (s.Median > 0) median.Points.Add(new DataPoint(s.X, s.Median));
        model.Series.Add(median);
        OxyColor[] colours = [PlotStyle.Vermillion, PlotStyle.Orange, PlotStyle.Yellow];
        MarkerType[] markers = [MarkerType.Circle, MarkerType.Square, MarkerType.Triangle];
        for (int k = 2; k >= 0; k--)
        {
            var series = Line($"top-{k + 1}", colours[k], markers[k], LineStyle.Solid);
            series.StrokeThickness = 3 - 0.5 * k;
            foreach (var s in samples)
                if (s.Top.Count > k && s.Top[k] > 0) series.Points.Add(new DataPoint(s.X, s.Top[k]));
            model.Series.Add(series);
        }

        if (showThreshold) model.Annotations.Add(Threshold(absoluteThreshold, $"|x| = {absoluteThreshold:0.###} (Sun et al. threshold)", PlotStyle.Grey));
        if (showFp16) model.Annotations.Add(Threshold(65504, "fp16 max 65504", PlotStyle.Purple));
        return model;
    }

    private static LineSeries Line(string title, OxyColor colour, MarkerType marker, LineStyle style) => new()
    {
        Title = title,
        Color = colour,
        StrokeThickness = 2.5,
        LineStyle = style,
        MarkerType = marker,
        MarkerSize = 4.5,
        MarkerFill = colour,
    };

    private static LineAnnotation Threshold(double y, string text, OxyColor colour) => new()
    {
        Type = LineAnnotationType.Horizontal,
        Y = y,
        Text = text,
        Color = colour,
        TextColor = colour,
        LineStyle = LineStyle.Dot,
        StrokeThickness = 1.5,
        TextHorizontalAlignment = HorizontalAlignment.Left,
        TextLinePosition = 0.01,
    };
}
