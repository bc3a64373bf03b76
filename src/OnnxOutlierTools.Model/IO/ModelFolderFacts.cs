using System.Text.Json;

namespace OnnxOutlierTools.IO;

/// <summary>One configuration file beside the model and what was read from it.</summary>
/// <param name="File">The file name (config.json, genai_config.json, ...).</param>
/// <param name="Problem">Why it could not be read (not JSON, too large, not a regular file); null when it was.</param>
public sealed record ConfigFileFacts(string File, string? ModelType, int? BosTokenId, IReadOnlyList<int> EosTokenIds,
    int? HiddenSize, int? LayerCount, int? VocabularySize, string? Problem)
{
    /// <summary>The longest sequence the model was built for (max_position_embeddings, n_positions, n_ctx, or genai's
    /// context_length); null when the file does not say.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int? ContextLength { get; init; }
}

/// <summary>
/// What the folder around a model says about it: the Hugging Face <c>config.json</c> (with the
/// <c>text_config</c> of multimodal models), onnxruntime-genai's <c>genai_config.json</c> and the tokenizer
/// files present. Read once, here in the I/O layer, so the summary, the recognizer and later the probes
/// agree on one reading (and on one refusal of a malformed file). Links are followed, as everywhere for
/// inputs (the hub cache stores these files as links too); only regular files are read, and only small ones.
/// </summary>
public sealed record ModelFolderFacts(string Folder, ConfigFileFacts? HfConfig, ConfigFileFacts? GenAiConfig, IReadOnlyList<string> TokenizerFiles)
{
    public const string HfConfigName = "config.json";
    public const string GenAiConfigName = "genai_config.json";

    /// <summary>Configuration files are a few KB; anything far larger is not one and is not read.</summary>
    public const long MaxConfigBytes = 16L << 20;

    private static readonly string[] TokenizerNames =
        ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer.bin"];

    /// <summary>The context length: genai_config.json first, then config.json; null when neither says.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public int? ContextLength => GenAiConfig?.ContextLength ?? HfConfig?.ContextLength;

    /// <summary>The BOS id and the file it came from: genai_config.json first (it describes this ONNX
    /// export), then config.json.</summary>
    [System.Text.Json.Serialization.JsonIgnore] // derived: the files' own facts are serialized
    public (int Id, string File)? BosTokenId =>
        GenAiConfig?.BosTokenId is int g ? (g, GenAiConfig.File)
        : HfConfig?.BosTokenId is int h ? (h, HfConfig.File)
        : null;

    /// <summary>Configuration files that exist but could not be read, with the reason.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public IEnumerable<ConfigFileFacts> Problems => new[] { GenAiConfig, HfConfig }.Where(c => c?.Problem is not null)!;

    public static ModelFolderFacts Read(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var tokenizers = TokenizerNames.Where(n => FileFacts.Of(Path.Combine(folder, n)).Kind == FileKind.Regular).ToArray();
        return new ModelFolderFacts(folder,
            ReadConfig(folder, HfConfigName, root => root.TryGetProperty("text_config", out var text) && text.ValueKind == JsonValueKind.Object ? [root, text] : [root]),
            ReadConfig(folder, GenAiConfigName, root => root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object
                ? model.TryGetProperty("decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object ? [model, decoder] : [model]
                : []),
            tokenizers);
    }

    /// <summary>Reads one JSON file; <paramref name="scopes"/> gives the objects to look in, first match wins
    /// (the root and text_config for HF configs, "model" for genai).</summary>
    private static ConfigFileFacts? ReadConfig(string folder, string name, Func<JsonElement, JsonElement[]> scopes)
    {
        string path = Path.Combine(folder, name);
        var facts = FileFacts.Of(path);
        if (!facts.Exists) return null;
        ConfigFileFacts Problem(string why) => new(name, null, null, [], null, null, null, why);
        if (facts.Kind != FileKind.Regular) return Problem($"is {facts.KindText}, not a file");
        if (facts.Length > MaxConfigBytes) return Problem($"{facts.Length} bytes: too large for a configuration file");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return Problem("is not a JSON object");
            var where = scopes(doc.RootElement);
            return new ConfigFileFacts(name,
                First(where, e => e.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null)
                    ?? First(where, e => e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null),
                FirstInt(where, "bos_token_id"),
                Ints(where, "eos_token_id"),
                FirstInt(where, "hidden_size"),
                FirstInt(where, "num_hidden_layers") ?? FirstInt(where, "num_layers"),
                FirstInt(where, "vocab_size"),
                null)
            {
                ContextLength = FirstInt(where, "max_position_embeddings") ?? FirstInt(where, "n_positions") ?? FirstInt(where, "n_ctx")
                    ?? FirstInt(where, "context_length"),
            };
        }
        catch (JsonException ex) { return Problem($"is not valid JSON ({Text.Printable.FirstLine(ex.Message)})"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return Problem($"cannot be read ({Text.Printable.FirstLine(ex.Message)})"); }
    }

    private static T? First<T>(JsonElement[] scopes, Func<JsonElement, T?> get) where T : class
    {
        foreach (var e in scopes) if (get(e) is { } v) return v;
        return null;
    }

    private static int? First(JsonElement[] scopes, Func<JsonElement, int?> get)
    {
        foreach (var e in scopes) if (get(e) is { } v) return v;
        return null;
    }

    private static int? FirstInt(JsonElement[] scopes, string key) => First(scopes, e => Int(e, key));

    /// <summary>An integer, or the first of an integer array (bos_token_id is a list in some configs).</summary>
    private static int? Int(JsonElement e, string key)
    {
        if (!e.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return i;
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v[0].ValueKind == JsonValueKind.Number && v[0].TryGetInt32(out i)) return i;
        return null;
    }

    private static IReadOnlyList<int> Ints(JsonElement[] scopes, string key)
    {
        foreach (var e in scopes)
        {
            if (!e.TryGetProperty(key, out var v)) continue;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i)) return [i];
            if (v.ValueKind == JsonValueKind.Array)
                return v.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out _)).Select(x => x.GetInt32()).ToArray();
        }
        return [];
    }
}
