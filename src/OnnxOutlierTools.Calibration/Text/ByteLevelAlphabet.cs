using System.Text;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// GPT-2's byte-to-character table (bytes_to_unicode in openai/gpt-2 encoder.py): printable Latin-1
/// bytes stand for themselves, the other 68 bytes for U+0100 onwards in byte order. Byte-level BPE
/// vocabularies are written in these characters ("Ġ" is the space byte); reports need the bytes back.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly Dictionary<char, byte> CharToByte = Build();
    private static readonly char[] ByteToChar = CharToByte.OrderBy(p => p.Value).Select(p => p.Key).ToArray();

    /// <summary>The vocabulary spelling of a text: its UTF-8 bytes as table characters ("Ġthe" for " the").</summary>
    public static string ToVocabString(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    private static Dictionary<char, byte> Build()
    {
        var map = new Dictionary<char, byte>(256);
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[printable ? (char)b : (char)next++] = (byte)b;
        }
        return map;
    }

    /// <summary>The bytes a vocabulary string stands for, or null when it has a character outside the table
    /// (an added token written in plain text).</summary>
    public static byte[]? ToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out byte b)) return null;
            bytes[i] = b;
        }
        return bytes;
    }
}

/// <summary>Turns token bytes into display text: UTF-8 where the bytes are whole characters, "&lt;0xXX&gt;"
/// for each byte of an incomplete or invalid sequence (" &lt;0xF0&gt;&lt;0x9F&gt;" for GPT-2's "ĠðŁ").</summary>
internal static class TokenBytes
{
    public static string Display(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        while (bytes.Length > 0)
        {
            var status = Rune.DecodeFromUtf8(bytes, out Rune rune, out int consumed);
            if (status == System.Buffers.OperationStatus.Done) sb.Append(rune.ToString());
            else sb.Append(Hex(bytes[..consumed]));
            bytes = bytes[consumed..];
        }
        return sb.ToString();
    }

    public static string Hex(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length * 6);
        foreach (byte b in bytes) sb.Append("<0x").Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)).Append('>');
        return sb.ToString();
    }

    /// <summary>The byte of a SentencePiece byte piece "&lt;0xXX&gt;" (exactly two hex digits), or null.</summary>
    public static byte? ParseBytePiece(string piece)
    {
        if (piece.Length != 6 || !piece.StartsWith("<0x", StringComparison.Ordinal) || piece[5] != '>') return null;
        return byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out byte b) ? b : null;
    }

    /// <summary>Display text of a SentencePiece-style piece: "▁" as a space, a byte piece as its character
    /// when it is one (ASCII), else as written.</summary>
    public static string DisplayMetaspacePiece(string piece)
    {
        if (ParseBytePiece(piece) is byte b) return b < 0x80 ? ((char)b).ToString() : piece;
        return piece.Replace('\u2581', ' ');
    }
}
