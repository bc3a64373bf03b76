using System.Globalization;
using System.Text;

namespace OnnxOutlierTools.Text;

/// <summary>Text from model files (names, producer strings, external locations, paths) made safe to print:
/// such text is attacker-controlled, and a raw newline or escape sequence in it would forge report lines
/// or drive the terminal. Every renderer escapes each field it takes from a file through <see cref="Escape"/>.</summary>
public static class Printable
{
    /// <summary>Escapes control characters (C0, DEL, C1), line and paragraph separators, bidirectional
    /// overrides and isolates (which reorder what a terminal shows) and lone surrogates as <c>\n</c>,
    /// <c>\r</c>, <c>\t</c>, <c>\e</c> or <c>\uXXXX</c>. Everything else is kept as is, so the result
    /// is one line that shows only what is in the text.</summary>
    public static string Escape(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            string? replacement = null;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb?.Append(c).Append(text[i + 1]);
                i++;
                continue;
            }
            if (NeedsEscape(c)) replacement = c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\u001b' => "\\e",
                _ => "\\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture),
            };
            if (replacement is null) { sb?.Append(c); continue; }
            sb ??= new StringBuilder(text, 0, i, text.Length + 16);
            sb.Append(replacement);
        }
        return sb?.ToString() ?? text;
    }

    /// <summary>The first line of a (library or OS) message, trimmed: messages are shown on one line.</summary>
    public static string FirstLine(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        int i = message.IndexOfAny(['\r', '\n']);
        return (i < 0 ? message : message[..i]).Trim();
    }

    private static bool NeedsEscape(char c) =>
        char.IsControl(c)                      // C0, DEL, C1
        || c is '\u2028' or '\u2029'           // line / paragraph separator
        || c is >= '\u202a' and <= '\u202e'    // bidi embeddings and overrides
        || c is >= '\u2066' and <= '\u2069'    // bidi isolates
        || c is '\u200e' or '\u200f' or '\u061c' // direction marks
        || char.IsSurrogate(c);                // a lone surrogate (paired ones are handled above)
}
