using System.Globalization;
using OnnxOutlierTools.Probes;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Series;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>Blocks x heads heat map of attention sinks: each cell is the mean probability mass a head puts on the
/// most-attended of the first P key positions (mean over every query of every window); a cell whose most-attended
/// position is not 0 says which. A sink head is a dark cell near 1.</summary>
internal static class AttentionSinkPlot
{
    public const int Width = 900;
    private const int MaxLabelledCells = 600;

    public sealed record Cell(int Block, int Head, int Position, double Mass);

    /// <summary>The cells, one per (block, head) of the first attention point of each block; empty when nothing was measured.</summary>
    public static IReadOnlyList<Cell> Cells(CalibrationStatistics statistics)
    {
        var cells = new List<Cell>();
        foreach (var point in statistics.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities && p.Block is not null).DistinctBy(p => p.Block))
        {
            var stats = statistics[point.Id];
            if (stats?.AttentionMass is not { } mass || stats.AttentionQueries == 0) continue;
            for (int h = 0; h < mass.Length; h++)
            {
                int best = Enumerable.Range(0, mass[h].Length).MaxBy(p => mass[h][p]);
                cells.Add(new Cell(point.Block!.Value, h, best, stats.MeanAttentionMass(h, best)));
            }
        }
        return cells;
    }

    public static int Height(IReadOnlyList<Cell> cells) => Math.Clamp(140 + 34 * (cells.Max(c => c.Block) - cells.Min(c => c.Block) + 1), 260, 1100);

    public static PlotModel? Build(CalibrationStatistics statistics, int positions)
    {
        var cells = Cells(statistics);
        if (cells.Count == 0) return null;
        int blocks0 = cells.Min(c => c.Block), blocks1 = cells.Max(c => c.Block), heads = cells.Max(c => c.Head) + 1;
        var model = PlotStyle.Model("Attention sinks: mean attention mass on one key position",
            $"per block and head, the most-attended of the first {positions} key positions (mean over queries); \"pN\": that position is N, not 0");

        var data = new double[heads, blocks1 - blocks0 + 1];
        for (int h = 0; h < heads; h++)
            for (int b = 0; b <= blocks1 - blocks0; b++) data[h, b] = double.NaN;
        foreach (var c in cells) data[c.Head, c.Block - blocks0] = c.Mass;

        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Bottom, Title = "head", Minimum = -0.5, Maximum = heads - 0.5,
            MajorStep = heads > 32 ? 4 : heads > 16 ? 2 : 1, MinorStep = 1, TickStyle = TickStyle.Outside,
        });
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Left, Title = "block", Minimum = blocks0 - 0.5, Maximum = blocks1 + 0.5, AxisTitleDistance = 10,
            StartPosition = 1, EndPosition = 0, // block 0 at the top, as a table reads
            MajorStep = blocks1 - blocks0 > 32 ? 4 : blocks1 - blocks0 > 16 ? 2 : 1, MinorStep = 1, TickStyle = TickStyle.Outside,
        });
        model.Axes.Add(new LinearColorAxis
        {
            Position = AxisPosition.Right, Title = "mean mass", Minimum = 0, Maximum = 1,
            Palette = OxyPalette.Interpolate(200, OxyColors.White, OxyColor.FromRgb(0xFD, 0xB8, 0x63), OxyColor.FromRgb(0xE6, 0x55, 0x0D), OxyColor.FromRgb(0x7F, 0x27, 0x04)),
            InvalidNumberColor = OxyColor.FromRgb(0xEE, 0xEE, 0xEE),
            MajorStep = 0.25,
        });
        model.Series.Add(new HeatMapSeries
        {
            X0 = 0, X1 = heads - 1, Y0 = blocks0, Y1 = blocks1, Data = data,
            RenderMethod = HeatMapRenderMethod.Rectangles, Interpolate = false,
        });
        if (cells.Count <= MaxLabelledCells)
            foreach (var c in cells)
                model.Annotations.Add(new TextAnnotation
                {
                    Text = c.Position == 0 ? Mass(c.Mass) : $"{Mass(c.Mass)} p{c.Position}",
                    TextPosition = new DataPoint(c.Head, c.Block),
                    TextHorizontalAlignment = HorizontalAlignment.Center,
                    TextVerticalAlignment = VerticalAlignment.Middle,
                    Stroke = OxyColors.Transparent,
                    TextColor = c.Mass > 0.55 ? OxyColors.White : PlotStyle.Ink,
                    FontSize = heads > 16 ? 9 : 12,
                });
        return model;
    }

    private static string Mass(double m) => m.ToString("0.00", CultureInfo.InvariantCulture);
}
