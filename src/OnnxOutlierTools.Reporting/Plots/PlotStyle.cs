using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>The look every report plot shares: fonts a browser has (Arial is metric-compatible with Liberation Sans on
/// Linux, and the text measurer's Helvetica metrics match it), sizes readable on a laptop screen, a colour-blind-safe
/// palette (Okabe and Ito), grid lines on both axes.</summary>
internal static class PlotStyle
{
    public const string Font = "Arial";
    public const double FontSize = 13;
    public const double TitleSize = 16;

    // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
    public static readonly OxyColor Vermillion = OxyColor.FromRgb(0xD5, 0x5E, 0x00);
    public static readonly OxyColor Orange = OxyColor.FromRgb(0xE6, 0x9F, 0x00);
    public static readonly OxyColor Yellow = OxyColor.FromRgb(0xC9, 0xB2, 0x00);
    public static readonly OxyColor Blue = OxyColor.FromRgb(0x00, 0x72, 0xB2);
    public static readonly OxyColor SkyBlue = OxyColor.FromRgb(0x56, 0xB4, 0xE9);
    public static readonly OxyColor Green = OxyColor.FromRgb(0x00, 0x9E, 0x73);
    public static readonly OxyColor Purple = OxyColor.FromRgb(0xCC, 0x79, 0xA7);
    public static readonly OxyColor Grey = OxyColor.FromRgb(0x70, 0x70, 0x70);
    public static readonly OxyColor Ink = OxyColor.FromRgb(0x22, 0x22, 0x22);

    public static PlotModel Model(string title, string? subtitle = null) => new()
    {
        Title = title,
        Subtitle = subtitle,
        DefaultFont = Font,
        DefaultFontSize = FontSize,
        TitleFontSize = TitleSize,
        SubtitleFontSize = FontSize - 1,
        TitleFontWeight = FontWeights.Bold,
        TitleColor = Ink,
        SubtitleColor = Grey,
        TextColor = Ink,
        Background = OxyColors.White,
        PlotAreaBorderColor = OxyColor.FromRgb(0xBB, 0xBB, 0xBB),
        Padding = new OxyThickness(8, 8, 16, 8),
    };

    /// <summary>Below the plot, one row: never clipped at the right edge, never over the data.</summary>
    public static Legend Legend() => new()
    {
        LegendPosition = LegendPosition.BottomCenter,
        LegendPlacement = LegendPlacement.Outside,
        LegendOrientation = LegendOrientation.Horizontal,
        LegendItemSpacing = 24,
        LegendBorder = OxyColors.Transparent,
        LegendBackground = OxyColors.White,
        LegendFontSize = FontSize,
        LegendSymbolLength = 28,
    };

    public static LogarithmicAxis LogY(string title) => new()
    {
        Position = AxisPosition.Left,
        Title = title,
        Base = 10,
        UseSuperExponentialFormat = false,
        IntervalLength = 36, // a label on every decade, not every other one
        StringFormat = "0.###",
        MajorGridlineStyle = LineStyle.Solid,
        MajorGridlineColor = OxyColor.FromRgb(0xDD, 0xDD, 0xDD),
        MinorGridlineStyle = LineStyle.Dot,
        MinorGridlineColor = OxyColor.FromRgb(0xEE, 0xEE, 0xEE),
        AxisTitleDistance = 8,
    };

    public static LinearAxis LinearX(string title) => new()
    {
        Position = AxisPosition.Bottom,
        Title = title,
        MajorGridlineStyle = LineStyle.Solid,
        MajorGridlineColor = OxyColor.FromRgb(0xEE, 0xEE, 0xEE),
        AxisTitleDistance = 6,
    };

    /// <summary>A log-axis range that shows every value with some room: from a bit below the smallest to a bit above the largest.</summary>
    public static (double Min, double Max) LogRange(IEnumerable<double> values)
    {
        var positive = values.Where(v => v > 0 && double.IsFinite(v)).ToArray();
        if (positive.Length == 0) return (0.1, 10);
        double min = positive.Min(), max = positive.Max();
        if (max / min < 10) { min /= 3; max *= 3; }
        return (min / 2, max * 2.5);
    }
}
