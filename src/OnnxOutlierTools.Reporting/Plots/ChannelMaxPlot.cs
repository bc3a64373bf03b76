using System.Globalization;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Text;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Series;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>Per-channel max |x| at one probe point, one stem per channel on a log scale, with the median channel as a
/// line and the channels far above it labelled: channel-wise outliers stand out as isolated tall stems.</summary>
internal static class ChannelMaxPlot
{
    public const int Width = 900, Height = 360;

    /// <summary>Above this many channels, stems are max-pooled into bins (an outlier survives pooling; labels keep the
    /// exact channel).</summary>
    public const int MaxStems = 1536;

    public static PlotModel Build(ProbePoint point, PointStatistics stats, string why, double labelRatio = 10, int maxLabels = 6)
    {
        var max = PointSelection.ChannelAbsMax(stats);
        double median = PointSelection.Median(max);
        var outliers = Enumerable.Range(0, max.Length)
            .Where(c => double.IsFinite(max[c]) && median > 0 && max[c] >= labelRatio * median)
            .OrderByDescending(c => max[c]).ToList();

        int pool = (max.Length + MaxStems - 1) / MaxStems;
        string pooled = pool > 1 ? $"; stems are the max of {pool} adjacent channels" : "";
        var model = PlotStyle.Model(
            $"Per-channel max |x| at {Printable.Escape(point.Id)}",
            $"{why}; {max.Length} channels, median channel {Num(median)}, {outliers.Count} channel(s) at >= {labelRatio:0.#}x the median{pooled}");

        var x = PlotStyle.LinearX("channel");
        x.Minimum = -0.5 - max.Length * 0.01;
        x.Maximum = max.Length - 0.5 + max.Length * 0.01;
        model.Axes.Add(x);
        var (min, top) = PlotStyle.LogRange(max.Append(median));
        var y = PlotStyle.LogY("max |x| over tokens (log)");
        y.Minimum = min;
        y.Maximum = top * 4; // room above the tallest stem for its label
        model.Axes.Add(y);

        var stems = new StemSeries { Title = "channel max |x|", Color = PlotStyle.Blue, StrokeThickness = max.Length > 256 ? 1 : 2, Base = min };
        for (int start = 0; start < max.Length; start += pool)
        {
            int end = Math.Min(max.Length, start + pool);
            int arg = Enumerable.Range(start, end - start).Where(c => double.IsFinite(max[c])).DefaultIfEmpty(-1).MaxBy(c => c < 0 ? 0 : max[c]);
            if (arg >= 0 && max[arg] > 0) stems.Points.Add(new DataPoint(arg, max[arg]));
        }
        model.Series.Add(stems);
        if (median > 0)
            model.Series.Add(new LineSeries
            {
                Title = $"median channel: {Num(median)}",
                Color = PlotStyle.Grey,
                LineStyle = LineStyle.Dash,
                StrokeThickness = 1.5,
                Points = { new DataPoint(x.Minimum, median), new DataPoint(x.Maximum, median) },
            });
        if (outliers.Count > 0)
            model.Series.Add(new ScatterSeries { Title = $"labelled: >= {labelRatio:0.#}x the median", MarkerType = MarkerType.Circle, MarkerFill = PlotStyle.Vermillion, MarkerSize = 4.5 });
        model.Legends.Add(PlotStyle.Legend());
        // Outliers often come in neighbouring channels (two massive channels side by side): a label that would sit on an
        // earlier (larger) one's line is moved one line down.
        var placed = new List<int>();
        foreach (int c in outliers.Take(maxLabels))
        {
            int line = placed.Count(p => Math.Abs(p - c) < max.Length * 0.15);
            placed.Add(c);
            ((ScatterSeries)model.Series[^1]).Points.Add(new ScatterPoint(c, max[c]));
            model.Annotations.Add(new TextAnnotation
            {
                Text = $"ch {c}: {Num(max[c])} ({Num(max[c] / median)}x)",
                TextPosition = new DataPoint(c, max[c]),
                TextVerticalAlignment = VerticalAlignment.Bottom,
                TextHorizontalAlignment = c < max.Length * 0.75 ? HorizontalAlignment.Left : HorizontalAlignment.Right,
                Offset = new ScreenVector(c < max.Length * 0.75 ? 6 : -6, -4 + 18 * line),
                Stroke = OxyColors.Transparent,
                Background = OxyColor.FromAColor(220, OxyColors.White),
                TextColor = PlotStyle.Vermillion,
                FontWeight = FontWeights.Bold,
            });
        }
        return model;
    }

    internal static string Num(double v) =>
        !double.IsFinite(v) ? v.ToString(CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 1000 ? v.ToString("#,0", CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 10 ? v.ToString("0.#", CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 0.01 ? v.ToString("0.###", CultureInfo.InvariantCulture)
        : v.ToString("0.##e+0", CultureInfo.InvariantCulture);
}
