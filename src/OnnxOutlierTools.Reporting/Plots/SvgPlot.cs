using System.Text.RegularExpressions;
using OxyPlot;

namespace OnnxOutlierTools.Reporting.Plots;

/// <summary>Renders a plot to an inline SVG element with OxyPlot's own exporter. The SVG carries a viewBox so the page
/// can scale it to the column width; text is measured with the PDF renderer's built-in Helvetica metrics (OxyPlot.Core
/// has no other measurer, and it needs no native library or installed font), converted to pixels.</summary>
internal static partial class SvgPlot
{
    /// <param name="idPrefix">Prefixed to every id in the SVG. OxyPlot numbers its clip paths from 1 in each export, and
    /// ids are document-wide in HTML: without a prefix, a second plot's <c>url(#clipPath1)</c> clips it with the first
    /// plot's rectangle.</param>
    public static string Render(PlotModel model, int width, int height, string idPrefix)
    {
        var measurer = new PixelTextMeasurer(width, height, model.Background);
        string svg = SvgExporter.ExportToString(model, width, height, isDocument: false, textMeasurer: measurer);
        // isDocument: false still starts with an XML declaration, which HTML parses as a bogus comment.
        svg = svg[svg.IndexOf("<svg", StringComparison.Ordinal)..];
        svg = IdReference().Replace(svg, m => m.Groups["attr"].Success
            ? $"{m.Groups["attr"].Value}=\"{(m.Groups["hash"].Value)}{idPrefix}-{m.Groups["id"].Value}\""
            : $"url(#{idPrefix}-{m.Groups["url"].Value})");
        // Fixed pixel sizes become a viewBox plus width 100%: the plot fills the column and keeps its aspect.
        return SizeAttributes().Replace(svg, $"viewBox=\"0 0 {width} {height}\" width=\"100%\" preserveAspectRatio=\"xMidYMid meet\"", 1);
    }

    [GeneratedRegex("width=\"[0-9.]+\" height=\"[0-9.]+\"")]
    private static partial Regex SizeAttributes();

    [GeneratedRegex("(?<attr>\\bid|xlink:href|\\bhref)=\"(?<hash>#?)(?<id>[^\"]+)\"|url\\(#(?<url>[^)]+)\\)")]
    private static partial Regex IdReference();
}

/// <summary>The PDF renderer measures a font size as points and returns points (72 per inch); SVG font sizes are CSS
/// pixels (96 per inch), so its widths come out 3/4 of what a browser draws, and OxyPlot then clips legend texts and
/// packs legend items into each other. Scaling by 4/3 gives the browser's Arial/Liberation Sans widths.</summary>
internal sealed class PixelTextMeasurer(double width, double height, OxyColor background) : PdfRenderContext(width, height, background)
{
    private const double PixelsPerPoint = 96.0 / 72.0;

    public override OxySize MeasureText(string text, string fontFamily, double fontSize, double fontWeight)
    {
        var size = base.MeasureText(text, fontFamily, fontSize, fontWeight);
        return new OxySize(size.Width * PixelsPerPoint, size.Height * PixelsPerPoint);
    }
}
