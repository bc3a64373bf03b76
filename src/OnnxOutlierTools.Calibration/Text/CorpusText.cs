using System.Text;
using System.Text.RegularExpressions;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>Reads a calibration text file (UTF-8, BOM optional, strictly decoded) and cuts it into paragraphs
/// (blank-line separated) and sentences.</summary>
public static partial class CorpusText
{
    /// <summary>Texts beyond this are refused: calibration needs thousands of tokens, not gigabytes.</summary>
    public const long MaxBytes = 1L << 30;

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static string Read(string path)
    {
        var facts = FileFacts.Of(path);
        if (facts.Kind != FileKind.Regular) throw new CalibrationInputException(path, facts.Exists ? $"is {facts.KindText}, not a text file" : "does not exist");
        if (facts.Length > MaxBytes) throw new CalibrationInputException(path, $"{facts.Length} bytes: larger than the {MaxBytes >> 20} MiB a calibration text may have");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new CalibrationInputException(path, $"cannot be read ({ex.Message})", ex); }
        ReadOnlySpan<byte> span = bytes;
        if (span.StartsWith("\uFEFF"u8)) span = span[3..];
        try { return Strict.GetString(span); }
        catch (DecoderFallbackException ex) { throw new CalibrationInputException(path, $"is not UTF-8 text (invalid bytes at offset {ex.Index + (bytes.Length - span.Length)})", ex); }
    }

    [GeneratedRegex(@"\r?\n[ \t]*(\r?\n[ \t]*)+")]
    private static partial Regex BlankLines();

    /// <summary>Paragraphs: the text between blank lines, trimmed, empty ones dropped.</summary>
    public static IReadOnlyList<string> Paragraphs(string text) =>
        BlankLines().Split(text).Select(p => p.Trim()).Where(p => p.Length > 0).ToArray();

    // A sentence ends at . ! ? (or …), then any closing quotes or brackets, then whitespace, before anything
    // but a lower-case letter ("“Three?” she said." stays one sentence).
    [GeneratedRegex(@"(?<=[.!?\u2026][""'\u201D\u2019)\]]*)\s+(?=[^\p{Ll}])")]
    private static partial Regex SentenceEnd();

    /// <summary>Sentences of a paragraph: cut after sentence-ending punctuation (and closing quotes) followed
    /// by whitespace and not by a lower-case letter. A plain rule: "Mr. Smith" is cut too, which only makes
    /// segments shorter.</summary>
    public static IReadOnlyList<string> Sentences(string paragraph) =>
        SentenceEnd().Split(paragraph).Select(s => s.Trim()).Where(s => s.Length > 0).ToArray();
}
