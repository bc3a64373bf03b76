using System.Text.Json;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// Reads a Hugging Face tokenizer.json and builds the tokenizer its model and pipeline describe: BPE with a
/// ByteLevel pre-tokenizer (GPT-2, Llama 3, Qwen) or with "▁" escaping and byte fallback (Llama 2,
/// Mistral), WordPiece (BERT) and WordLevel. Pipeline parts outside what these need are refused by name,
/// so a tokenizer is never silently approximated.
/// </summary>
internal static class HfTokenizerJson
{
    /// <summary>tokenizer.json files of large vocabularies run to tens of MB; far more is not one.</summary>
    public const long MaxBytes = 512L << 20;

    public static TextTokenizer Load(string path)
    {
        using var doc = TokenizerConfig.ReadJson(path, MaxBytes);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new CalibrationInputException(path, "is not a Hugging Face tokenizer.json (no \"model\" object)");
        string type = String(model, "type") ?? (model.TryGetProperty("merges", out _) ? "BPE" : "?");
        var added = AddedTokens(root, path);
        var parts = new HfPipeline(path, Optional(root, "normalizer"), Optional(root, "pre_tokenizer"), Optional(root, "post_processor"));
        return type switch
        {
            "BPE" => HfBpeTokenizer.Create(path, model, added, parts),
            "WordPiece" => WordPieceTextTokenizer.FromTokenizerJson(path, model, added, parts),
            "WordLevel" => HfWordLevelTokenizer.Create(path, model, added, parts),
            _ => throw new CalibrationInputException(path, $"model type \"{type}\" is not supported (BPE, WordPiece and WordLevel are; for a SentencePiece Unigram model pass its tokenizer.model)"),
        };
    }

    /// <summary>The vocabulary object (token to id), checked: ids non-negative and unique.</summary>
    public static Dictionary<string, int> Vocabulary(string path, JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new CalibrationInputException(path, "model has no \"vocab\" object");
        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        var seen = new HashSet<int>();
        foreach (var p in vocab.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw new CalibrationInputException(path, $"vocab entry {JsonSerializer.Serialize(p.Name)} has id {p.Value}, not a non-negative integer");
            if (!seen.Add(id)) throw new CalibrationInputException(path, $"vocab id {id} is given to two tokens");
            map[p.Name] = id;
        }
        if (map.Count == 0) throw new CalibrationInputException(path, "model vocabulary is empty");
        return map;
    }

    private static List<AddedToken> AddedTokens(JsonElement root, string path)
    {
        var list = new List<AddedToken>();
        if (!root.TryGetProperty("added_tokens", out var arr) || arr.ValueKind != JsonValueKind.Array) return list;
        foreach (var t in arr.EnumerateArray())
        {
            if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("id", out var idv) || !idv.TryGetInt32(out int id) || id < 0 || String(t, "content") is not { } content)
                throw new CalibrationInputException(path, $"added_tokens entry {t} has no valid id and content");
            list.Add(new AddedToken(id, content, Bool(t, "special") ?? false, Bool(t, "normalized") ?? !(Bool(t, "special") ?? false)));
        }
        return list;
    }

    public static string? String(JsonElement e, string key) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static bool? Bool(JsonElement e, string key) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    private static JsonElement? Optional(JsonElement root, string key) =>
        root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Object ? v.Clone() : null;

    /// <summary>The components as one flat list: a "Sequence" of any of them contributes its members.</summary>
    public static IEnumerable<JsonElement> Flatten(JsonElement? component, string listKey)
    {
        if (component is not { } c) yield break;
        if (String(c, "type") == "Sequence" && c.TryGetProperty(listKey, out var items) && items.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in items.EnumerateArray())
                foreach (var inner in Flatten(item, listKey)) yield return inner;
        }
        else yield return c;
    }
}

/// <summary>The pipeline parts of a tokenizer.json besides its model (each null when absent).</summary>
internal sealed record HfPipeline(string Path, JsonElement? Normalizer, JsonElement? PreTokenizer, JsonElement? PostProcessor)
{
    public IEnumerable<JsonElement> Normalizers => HfTokenizerJson.Flatten(Normalizer, "normalizers");
    public IEnumerable<JsonElement> PreTokenizers => HfTokenizerJson.Flatten(PreTokenizer, "pretokenizers");

    /// <summary>Whether the post-processor's single-sequence template starts with a special token, and
    /// which (null: the file has no template, so it does not say).</summary>
    public (bool StartsWithSpecial, string? Token)? TemplateStart()
    {
        foreach (var p in HfTokenizerJson.Flatten(PostProcessor, "processors"))
        {
            if (HfTokenizerJson.String(p, "type") != "TemplateProcessing" || !p.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array) continue;
            if (single.GetArrayLength() > 0 && single[0].TryGetProperty("SpecialToken", out var st)) return (true, HfTokenizerJson.String(st, "id"));
            return (false, null);
        }
        return null;
    }

    public CalibrationInputException Unsupported(string what) => new(Path, $"{what} is not supported by this tool's tokenizer.json reader");
}
