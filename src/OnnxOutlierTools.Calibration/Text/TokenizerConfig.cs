using System.Text.Json;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// What Hugging Face's tokenizer_config.json and special_tokens_map.json beside a tokenizer say: the special
/// tokens by content (bos_token, eos_token, ...; a string or an object with "content"), add_bos_token and
/// do_lower_case. tokenizer_config.json wins where both name a token. Missing files give an empty config;
/// a file that is not a JSON object is an error naming it.
/// </summary>
public sealed record TokenizerConfig(IReadOnlyDictionary<string, string> Tokens, bool? AddBosToken, bool? DoLowerCase, IReadOnlyList<string> Files)
{
    public const string ConfigName = "tokenizer_config.json";
    public const string SpecialTokensMapName = "special_tokens_map.json";

    public static TokenizerConfig Empty { get; } = new(new Dictionary<string, string>(), null, null, []);

    public string? Token(string key) => Tokens.TryGetValue(key, out var t) ? t : null;

    private static readonly string[] TokenKeys = ["bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token"];

    public static TokenizerConfig Read(string folder)
    {
        var tokens = new Dictionary<string, string>(StringComparer.Ordinal);
        bool? addBos = null, lower = null;
        var files = new List<string>();
        // The map first, so tokenizer_config.json overwrites it.
        foreach (string name in new[] { SpecialTokensMapName, ConfigName })
        {
            string path = Path.Combine(folder, name);
            if (FileFacts.Of(path).Kind != FileKind.Regular) continue;
            using var doc = ReadJson(path);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new CalibrationInputException(path, "is not a JSON object");
            files.Add(name);
            foreach (string key in TokenKeys)
                if (root.TryGetProperty(key, out var v) && Content(v) is { } content) tokens[key] = content;
            if (root.TryGetProperty("add_bos_token", out var b) && b.ValueKind is JsonValueKind.True or JsonValueKind.False) addBos = b.GetBoolean();
            if (root.TryGetProperty("do_lower_case", out var l) && l.ValueKind is JsonValueKind.True or JsonValueKind.False) lower = l.GetBoolean();
        }
        return new TokenizerConfig(tokens, addBos, lower, files);
    }

    private static string? Content(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Object when v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
        _ => null,
    };

    /// <summary>Parses a JSON file; one that cannot be read or parsed is a <see cref="CalibrationInputException"/> naming it.</summary>
    internal static JsonDocument ReadJson(string path, long maxBytes = 64L << 20)
    {
        var facts = FileFacts.Of(path);
        if (facts.Kind != FileKind.Regular) throw new CalibrationInputException(path, facts.Exists ? $"is {facts.KindText}, not a file" : "does not exist");
        if (facts.Length > maxBytes) throw new CalibrationInputException(path, $"{facts.Length} bytes: too large for this file");
        try
        {
            var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 256 });
            return doc;
        }
        catch (JsonException ex) { throw new CalibrationInputException(path, $"is not valid JSON ({OnnxOutlierTools.Text.Printable.FirstLine(ex.Message)})", ex); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new CalibrationInputException(path, $"cannot be read ({ex.Message})", ex); }
    }
}
