using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;

namespace OnnxOutlierTools.Inspection;

/// <summary><see cref="JavaScriptEncoder.UnsafeRelaxedJsonEscaping"/> (names print as written: <c>+ &lt; &gt; &amp; '</c>
/// and non-ASCII letters unescaped) that also escapes Unicode format characters (bidi overrides and
/// isolates, zero-width characters, the BOM) and line/paragraph separators, which the relaxed encoder lets
/// through: on a terminal, or in a diff, a right-to-left override in a tensor name would reorder the
/// text around it (the text reports escape them too). Control characters were escaped already.</summary>
internal sealed class TerminalSafeJsonEncoder : JavaScriptEncoder
{
    private static readonly JavaScriptEncoder Relaxed = UnsafeRelaxedJsonEscaping;

    public static TerminalSafeJsonEncoder Instance { get; } = new();

    public override int MaxOutputCharactersPerInputCharacter => Math.Max(Relaxed.MaxOutputCharactersPerInputCharacter, 12);

    public override bool WillEncode(int unicodeScalar) => IsInvisible(unicodeScalar) || Relaxed.WillEncode(unicodeScalar);

    public override unsafe int FindFirstCharacterToEncode(char* text, int textLength)
    {
        int relaxed = Relaxed.FindFirstCharacterToEncode(text, textLength);
        int limit = relaxed < 0 ? textLength : relaxed;
        for (int i = 0; i < limit; i++)
            if (IsInvisible(text[i]) || (char.IsHighSurrogate(text[i]) && i + 1 < limit && char.IsLowSurrogate(text[i + 1]) && IsInvisible(char.ConvertToUtf32(text[i], text[i + 1]))))
                return i;
        return relaxed;
    }

    public override int FindFirstCharacterToEncodeUtf8(ReadOnlySpan<byte> utf8Text)
    {
        int relaxed = Relaxed.FindFirstCharacterToEncodeUtf8(utf8Text);
        int limit = relaxed < 0 ? utf8Text.Length : relaxed;
        for (int i = 0; i < limit;)
        {
            if (Rune.DecodeFromUtf8(utf8Text[i..limit], out var rune, out int consumed) != System.Buffers.OperationStatus.Done) return i;
            if (IsInvisible(rune.Value)) return i;
            i += consumed;
        }
        return relaxed;
    }

    public override unsafe bool TryEncodeUnicodeScalar(int unicodeScalar, char* buffer, int bufferLength, out int numberOfCharactersWritten)
    {
        if (!IsInvisible(unicodeScalar)) return Relaxed.TryEncodeUnicodeScalar(unicodeScalar, buffer, bufferLength, out numberOfCharactersWritten);
        Span<char> units = stackalloc char[2];
        int count = new Rune(unicodeScalar).EncodeToUtf16(units);
        numberOfCharactersWritten = 0;
        if (bufferLength < 6 * count) return false;
        for (int u = 0; u < count; u++)
        {
            // \uXXXX with upper-case hex, as the BCL's encoders write it.
            string hex = ((int)units[u]).ToString("X4", CultureInfo.InvariantCulture);
            buffer[numberOfCharactersWritten++] = '\\';
            buffer[numberOfCharactersWritten++] = 'u';
            foreach (char h in hex) buffer[numberOfCharactersWritten++] = h;
        }
        return true;
    }

    private static bool IsInvisible(int scalar) =>
        Rune.IsValid(scalar) && Rune.GetUnicodeCategory(new Rune(scalar)) is UnicodeCategory.Format or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
}
