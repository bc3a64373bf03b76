using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// The normalizers and the splitting pre-tokenizers of tokenizer.json that BPE pipelines use, as plain
/// functions: normalizers Prepend, Replace (string or regex), NFC/NFD/NFKC/NFKD, Lowercase, Strip;
/// pre-tokenizers Split (regex or string, behaviour "Isolated") and ByteLevel's GPT-2 regex. Anything
/// else is refused with its name (<see cref="HfPipeline.Unsupported"/>).
/// </summary>
internal static class HfTextSteps
{
    /// <summary>GPT-2's pre-tokenizer pattern, the one ByteLevel uses when use_regex is true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static Func<string, string> Normalizer(HfPipeline pipeline)
    {
        var steps = new List<Func<string, string>>();
        foreach (var n in pipeline.Normalizers)
        {
            string type = HfTokenizerJson.String(n, "type") ?? "?";
            steps.Add(type switch
            {
                "Prepend" when HfTokenizerJson.String(n, "prepend") is { } prefix => s => s.Length == 0 ? s : prefix + s,
                "Replace" => Replace(pipeline, n),
                "NFC" => s => s.Normalize(NormalizationForm.FormC),
                "NFD" => s => s.Normalize(NormalizationForm.FormD),
                "NFKC" => s => s.Normalize(NormalizationForm.FormKC),
                "NFKD" => s => s.Normalize(NormalizationForm.FormKD),
                "Lowercase" => s => s.ToLowerInvariant(),
                "Strip" => Strip(HfTokenizerJson.Bool(n, "strip_left") ?? true, HfTokenizerJson.Bool(n, "strip_right") ?? true),
                _ => throw pipeline.Unsupported($"normalizer \"{type}\""),
            });
        }
        return s =>
        {
            foreach (var step in steps) s = step(s);
            return s;
        };
    }

    private static Func<string, string> Strip(bool left, bool right) => s => left && right ? s.Trim() : left ? s.TrimStart() : right ? s.TrimEnd() : s;

    private static Func<string, string> Replace(HfPipeline pipeline, JsonElement n)
    {
        string content = HfTokenizerJson.String(n, "content") ?? throw pipeline.Unsupported("normalizer Replace without \"content\"");
        var pattern = n.TryGetProperty("pattern", out var p) ? p : default;
        if (HfTokenizerJson.String(pattern, "String") is { } literal) return s => s.Replace(literal, content, StringComparison.Ordinal);
        if (HfTokenizerJson.String(pattern, "Regex") is { } regex)
        {
            var re = Compile(pipeline, regex);
            return s => re.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal));
        }
        throw pipeline.Unsupported("normalizer Replace without a String or Regex pattern");
    }

    /// <summary>A Split pre-tokenizer ("Isolated": matches and the text between them both become pieces).</summary>
    public static Func<string, IEnumerable<string>> Split(HfPipeline pipeline, JsonElement split)
    {
        string behavior = HfTokenizerJson.String(split, "behavior") ?? "Isolated";
        if (behavior != "Isolated" || (HfTokenizerJson.Bool(split, "invert") ?? false))
            throw pipeline.Unsupported($"pre-tokenizer Split with behavior \"{behavior}\"{((HfTokenizerJson.Bool(split, "invert") ?? false) ? " and invert" : "")}");
        var pattern = split.TryGetProperty("pattern", out var p) ? p : default;
        var re = HfTokenizerJson.String(pattern, "Regex") is { } regex ? Compile(pipeline, regex)
            : HfTokenizerJson.String(pattern, "String") is { } literal ? new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant)
            : throw pipeline.Unsupported("pre-tokenizer Split without a String or Regex pattern");
        return s => Isolated(re, s);
    }

    public static IEnumerable<string> Isolated(Regex re, string s)
    {
        int at = 0;
        foreach (Match m in re.Matches(s))
        {
            if (m.Length == 0) continue;
            if (m.Index > at) yield return s[at..m.Index];
            yield return m.Value;
            at = m.Index + m.Length;
        }
        if (at < s.Length) yield return s[at..];
    }

    /// <summary>Compiles a tokenizer.json (Oniguruma) pattern with .NET's engine; the patterns BPE
    /// tokenizers ship (\p{L}, \p{N}, (?i:...), lookahead) mean the same in both.</summary>
    public static Regex Compile(HfPipeline pipeline, string pattern)
    {
        try { return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled); }
        catch (ArgumentException ex) { throw new CalibrationInputException(pipeline.Path, $"regex {JsonSerializer.Serialize(pattern)} does not compile ({ex.Message})", ex); }
    }
}
