using System.Globalization;
using System.Text;

namespace OnnxOutlierTools.Cli;

/// <summary>Refuses command-line arguments that are not UTF-8. .NET decodes the arguments as UTF-8 and turns
/// bytes it cannot decode into U+FFFD, so a file named in Latin-1 would reach the commands under another
/// name: an input would be reported missing, and an output written under a name nobody typed. The raw
/// bytes (Linux: /proc/self/cmdline) show which argument that happened to; it gets one clear line instead.</summary>
public static class ArgumentEncoding
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The error for the first argument whose raw bytes are not UTF-8, or null when all are (or the
    /// raw arguments cannot be read, or do not line up with <paramref name="args"/>: then nothing is refused).</summary>
    public static string? Check(IReadOnlyList<string> args, IReadOnlyList<byte[]>? raw)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (raw is null || raw.Count < args.Count) return null;
        // The runtime's own arguments (dotnet, the .dll) come first: the last args.Count are the user's.
        var mine = raw.Skip(raw.Count - args.Count).ToList();
        for (int i = 0; i < args.Count; i++)
            if (!string.Equals(Encoding.UTF8.GetString(mine[i]), args[i], StringComparison.Ordinal)) return null;
        var bad = mine.FirstOrDefault(bytes => !IsUtf8(bytes));
        return bad is null ? null
            : $"'{Describe(bad)}': not valid UTF-8 (bytes shown as \\xNN); onnx-outliers can only open and create files with UTF-8 names, so rename the file";
    }

    /// <summary>This process's arguments as bytes, from /proc/self/cmdline; null where that does not exist.</summary>
    public static IReadOnlyList<byte[]>? ReadRaw()
    {
        byte[] cmdline;
        try { cmdline = File.ReadAllBytes("/proc/self/cmdline"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException) { return null; }
        if (cmdline.Length == 0 || cmdline[^1] != 0) return null;
        var parts = new List<byte[]>();
        int start = 0;
        for (int i = 0; i < cmdline.Length; i++)
            if (cmdline[i] == 0) { parts.Add(cmdline[start..i]); start = i + 1; }
        return parts;
    }

    /// <summary>The bytes as text: UTF-8 runs as they are (escaped like any other text), each byte that is
    /// not part of valid UTF-8 as <c>\xNN</c>.</summary>
    public static string Describe(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        var sb = new StringBuilder();
        int i = 0;
        while (i < bytes.Length)
        {
            int length = SequenceLength(bytes, i);
            if (length == 0) { sb.Append("\\x").Append(bytes[i].ToString("x2", CultureInfo.InvariantCulture)); i++; continue; }
            sb.Append(Text.Printable.Escape(Encoding.UTF8.GetString(bytes, i, length)));
            i += length;
        }
        return sb.ToString();
    }

    private static bool IsUtf8(byte[] bytes)
    {
        try { Strict.GetCharCount(bytes); return true; }
        catch (DecoderFallbackException) { return false; }
    }

    /// <summary>The length of the valid UTF-8 sequence starting at <paramref name="i"/>, or 0.</summary>
    private static int SequenceLength(byte[] bytes, int i)
    {
        for (int length = 1; length <= 4 && i + length <= bytes.Length; length++)
        {
            try { Strict.GetCharCount(bytes, i, length); return length; }
            catch (DecoderFallbackException) { }
        }
        return 0;
    }
}
