using System.Globalization;
using System.Text;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Reporting.Html;

/// <summary>Text from the model and the corpus made safe for the page: control characters, bidi overrides and line
/// separators are first made visible (<see cref="Printable.Escape"/>: a token "\n" shows as <c>\n</c>, ESC as <c>\e</c>),
/// then the five HTML-significant characters are escaped, so a token like <c>&lt;/table&gt;&lt;script&gt;</c> is text.</summary>
internal static class HtmlText
{
    public static string Escape(string? text)
    {
        string visible = Printable.Escape(text);
        var sb = new StringBuilder(visible.Length + 8);
        foreach (char c in visible)
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => c.ToString(),
            });
        return sb.ToString();
    }

    /// <summary>A token as the page shows it: its text in quotes (so leading spaces and empty texts show), with the id
    /// in a tooltip and after it; <c>#id</c> when the text is unknown.</summary>
    public static string Token(int tokenId, string? text) =>
        text is null
            ? $"<code class=\"tok\">#{tokenId}</code>"
            : $"<code class=\"tok\" title=\"token id {tokenId}\">&quot;{Escape(text)}&quot;</code>";

    public static string Num(double? v) => v is { } x ? Escape(FindingRows.N(x)) : "";

    public static string Int(long v) => v.ToString("#,0", CultureInfo.InvariantCulture);
}
