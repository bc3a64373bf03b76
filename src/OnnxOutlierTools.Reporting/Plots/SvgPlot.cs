using System.Text.RegularExpressions;
using OxyPlot;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>Renders a plot to an inline SVG element with OxyPlot's own exporter. The SVG carries a viewBox so the page
/// can scale it to the column width; text is measured with the PDF renderer's built-in Helvetica metrics (OxyPlot.Core
/// has no other measurer, and it needs no native library or installed font).</summary>
internal static partial class SvgPlot
{
    public static string Render(PlotModel model, int width, int height)
    {
        var measurer = new PdfRenderContext(width, height, model.Background);
        string svg = SvgExporter.ExportToString(model, width, height, isDocument: false, textMeasurer: measurer);
        // Fixed pixel sizes become a viewBox plus width 100%: the plot fills the column and keeps its aspect.
        return SizeAttributes().Replace(svg, $"viewBox=\"0 0 {width} {height}\" width=\"100%\" preserveAspectRatio=\"xMidYMid meet\"", 1);
    }

    [GeneratedRegex("width=\"[0-9.]+\" height=\"[0-9.]+\"")]
    private static partial Regex SizeAttributes();
}
