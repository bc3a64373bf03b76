using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// A tokenizer.json BPE model. The merging is Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>, built
/// from the file's vocab and merges (it merges by merge rank, as the Rust crate does). The pipeline around
/// it is this class's, because the library cannot express two parts of it: Hugging Face's added-token
/// split (each piece between added tokens normalized on its own) and SentencePiece-style byte fallback
/// (a character missing from the vocabulary becomes its UTF-8 byte tokens "&lt;0xXX&gt;"; BpeTokenizer only
/// knows an unknown token). Byte fallback is applied before merging, which is exact because no merge
/// involves a byte token (checked at load: a file with such a merge is refused). ignore_merges (a
/// pre-token found whole in the vocabulary is taken as is) is applied here too.
/// </summary>
internal sealed class HfBpeTokenizer : TextTokenizer
{
    private readonly BpeTokenizer _bpe;
    private readonly bool _byteLevel;
    private readonly Dictionary<string, int> _vocab;
    private readonly string?[] _tokens;
    private readonly HashSet<int> _added;
    private readonly AddedTokenSplitter _splitter;
    private readonly Func<string, string> _normalize;
    private readonly Func<string, bool, IEnumerable<string>> _preTokenize;
    private readonly bool _ignoreMerges;
    private readonly bool _byteFallback;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly HfPipeline _pipeline;

    private HfBpeTokenizer(string path, BpeTokenizer bpe, bool byteLevel, Dictionary<string, int> vocab, List<AddedToken> added, HfPipeline pipeline,
        Func<string, string> normalize, Func<string, bool, IEnumerable<string>> preTokenize, bool ignoreMerges, bool byteFallback, int? unkId, bool fuseUnk) : base(path)
    {
        _bpe = bpe;
        _byteLevel = byteLevel;
        _vocab = vocab;
        _pipeline = pipeline;
        _normalize = normalize;
        _preTokenize = preTokenize;
        _ignoreMerges = ignoreMerges;
        _byteFallback = byteFallback;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        int size = Math.Max(vocab.Values.Max(), added.Count == 0 ? -1 : added.Max(a => a.Id)) + 1;
        _tokens = new string?[size];
        foreach (var (token, id) in vocab) _tokens[id] = token;
        foreach (var a in added) _tokens[a.Id] = a.Content;
        _added = added.Select(a => a.Id).ToHashSet();
        _splitter = new AddedTokenSplitter(added);
    }

    public override string Kind => _byteLevel ? TokenizerKinds.HfByteLevelBpe : TokenizerKinds.HfSentencePieceBpe;
    public override int VocabSize => _tokens.Length;

    internal override bool? TemplatePrependsBos(int bosId) => _pipeline.TemplateStart() is { } t ? t.StartsWithSpecial && t.Token is { } first && TokenToId(first) == bosId : null;
    internal override bool FormatPrependsBos => !_byteLevel; // Llama/Mistral prepend <s>; GPT-2-style byte-level BPE does not.

    public static HfBpeTokenizer Create(string path, JsonElement model, List<AddedToken> added, HfPipeline pipeline)
    {
        var vocab = HfTokenizerJson.Vocabulary(path, model);
        var merges = Merges(path, model);
        bool byteLevel = pipeline.PreTokenizers.Any(p => HfTokenizerJson.String(p, "type") == "ByteLevel");
        var metaspace = pipeline.PreTokenizers.FirstOrDefault(p => HfTokenizerJson.String(p, "type") == "Metaspace");
        bool byteFallback = HfTokenizerJson.Bool(model, "byte_fallback") ?? false;
        bool escapesSpaces = metaspace.ValueKind == JsonValueKind.Object
            || pipeline.Normalizers.Any(n => (HfTokenizerJson.String(n, "prepend") ?? HfTokenizerJson.String(n, "content") ?? "").Contains('\u2581'));
        if (!byteLevel && !escapesSpaces && !byteFallback)
            throw pipeline.Unsupported("a BPE model with neither a ByteLevel pre-tokenizer nor \"▁\" space escaping");
        if (byteLevel && byteFallback) throw pipeline.Unsupported("a byte-level BPE model with byte_fallback");
        if (HfTokenizerJson.String(model, "continuing_subword_prefix") is { Length: > 0 } || HfTokenizerJson.String(model, "end_of_word_suffix") is { Length: > 0 })
            throw pipeline.Unsupported("BPE with continuing_subword_prefix or end_of_word_suffix");
        if (model.TryGetProperty("dropout", out var dropout) && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
            throw pipeline.Unsupported("BPE dropout (it makes tokenization random)");
        if (byteFallback && merges.Any(m => m.Split(' ').Any(part => TokenBytes.ParseBytePiece(part) is not null)))
            throw pipeline.Unsupported("byte fallback with merges of byte tokens");

        string? unk = HfTokenizerJson.String(model, "unk_token");
        bool fuseUnk = HfTokenizerJson.Bool(model, "fuse_unk") ?? false;
        var options = new BpeOptions(vocab) { Merges = merges, ByteLevel = byteLevel };
        if (unk is not null && vocab.ContainsKey(unk)) { options.UnknownToken = unk; options.FuseUnknownTokens = fuseUnk; }
        BpeTokenizer bpe;
        try { bpe = BpeTokenizer.Create(options); }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new CalibrationInputException(path, $"Microsoft.ML.Tokenizers refused the BPE model ({ex.Message})", ex);
        }

        var normalize = HfTextSteps.Normalizer(pipeline);
        var preTokenize = byteLevel ? ByteLevelPreTokenizer(pipeline) : MetaspacePreTokenizer(pipeline, metaspace);
        int? unkId = unk is not null && vocab.TryGetValue(unk, out int u) ? u : null;
        var tokenizer = new HfBpeTokenizer(path, bpe, byteLevel, vocab, added, pipeline, normalize, preTokenize,
            HfTokenizerJson.Bool(model, "ignore_merges") ?? false, byteFallback, unkId, fuseUnk);
        if (added.Any(a => a.Normalized) && pipeline.Normalizer is not null)
            tokenizer.AddNote($"{path}: added tokens marked \"normalized\" are matched on the raw text");
        return tokenizer;
    }

    private static List<string> Merges(string path, JsonElement model)
    {
        if (!model.TryGetProperty("merges", out var arr) || arr.ValueKind != JsonValueKind.Array)
            throw new CalibrationInputException(path, "BPE model has no \"merges\" array");
        var merges = new List<string>(arr.GetArrayLength());
        foreach (var m in arr.EnumerateArray())
        {
            // Older files write "a b", newer ones ["a", "b"] (which allows spaces inside a part: refused, BpeOptions splits on the space).
            string? merge = m.ValueKind == JsonValueKind.String ? m.GetString()
                : m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2 && m[0].GetString() is { } a && m[1].GetString() is { } b && !a.Contains(' ') && !b.Contains(' ') ? a + " " + b
                : null;
            if (merge is null || merge.Count(c => c == ' ') != 1)
                throw new CalibrationInputException(path, $"merge {m} is not a pair of tokens without spaces");
            merges.Add(merge);
        }
        return merges;
    }

    /// <summary>ByteLevel (with GPT-2's regex unless use_regex is false) after any Split pre-tokenizers.</summary>
    private static Func<string, bool, IEnumerable<string>> ByteLevelPreTokenizer(HfPipeline pipeline)
    {
        var stages = new List<Func<string, IEnumerable<string>>>();
        bool addPrefixSpace = false;
        foreach (var p in pipeline.PreTokenizers)
        {
            switch (HfTokenizerJson.String(p, "type"))
            {
                case "Split": stages.Add(HfTextSteps.Split(pipeline, p)); break;
                case "ByteLevel":
                    addPrefixSpace = HfTokenizerJson.Bool(p, "add_prefix_space") ?? false;
                    if (HfTokenizerJson.Bool(p, "use_regex") ?? true)
                    {
                        var re = new Regex(HfTextSteps.Gpt2Pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
                        stages.Add(s => HfTextSteps.Isolated(re, s));
                    }
                    break;
                case var other: throw pipeline.Unsupported($"pre-tokenizer \"{other}\" in a byte-level BPE pipeline");
            }
        }
        return (piece, _) =>
        {
            if (addPrefixSpace && piece.Length > 0 && !char.IsWhiteSpace(piece[0])) piece = " " + piece;
            IEnumerable<string> parts = [piece];
            foreach (var stage in stages) parts = parts.SelectMany(stage);
            return parts;
        };
    }

    /// <summary>Metaspace: spaces become the replacement character, which is prepended per prepend_scheme
    /// ("always", "first": only before the text's first piece, "never"; older files: add_prefix_space), and
    /// with split the text is cut before each replacement character.</summary>
    private static Func<string, bool, IEnumerable<string>> MetaspacePreTokenizer(HfPipeline pipeline, JsonElement metaspace)
    {
        foreach (var p in pipeline.PreTokenizers)
            if (HfTokenizerJson.String(p, "type") != "Metaspace") throw pipeline.Unsupported($"pre-tokenizer \"{HfTokenizerJson.String(p, "type")}\" in a SentencePiece-style BPE pipeline");
        if (metaspace.ValueKind != JsonValueKind.Object) return (piece, _) => [piece];
        string replacement = HfTokenizerJson.String(metaspace, "replacement") ?? "\u2581";
        string scheme = HfTokenizerJson.String(metaspace, "prepend_scheme") ?? ((HfTokenizerJson.Bool(metaspace, "add_prefix_space") ?? true) ? "always" : "never");
        bool split = HfTokenizerJson.Bool(metaspace, "split") ?? true;
        return (piece, first) =>
        {
            piece = piece.Replace(" ", replacement, StringComparison.Ordinal);
            if ((scheme == "always" || scheme == "first" && first) && !piece.StartsWith(replacement, StringComparison.Ordinal)) piece = replacement + piece;
            if (!split) return [piece];
            var words = new List<string>();
            int start = 0;
            for (int i = 1; i < piece.Length; i++)
                if (string.CompareOrdinal(piece, i, replacement, 0, replacement.Length) == 0) { words.Add(piece[start..i]); start = i; }
            words.Add(piece[start..]);
            return words;
        };
    }

    public override int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _splitter.Encode(text, EncodePiece);
    }

    private void EncodePiece(string piece, bool first, List<int> ids)
    {
        string normalized = _normalize(piece);
        foreach (string word in _preTokenize(normalized, first))
        {
            if (word.Length == 0) continue;
            if (_ignoreMerges && _vocab.TryGetValue(_byteLevel ? ByteLevelAlphabet.ToVocabString(word) : word, out int whole)) { ids.Add(whole); continue; }
            if (_byteLevel) { ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false)); continue; }
            EncodeWithFallback(word, ids);
        }
    }

    /// <summary>Runs of characters in the vocabulary go to the BPE; any other character becomes its byte
    /// tokens (or the unknown token, fused with a preceding one when fuse_unk).</summary>
    private void EncodeWithFallback(string word, List<int> ids)
    {
        int runStart = 0, i = 0;
        Span<byte> utf8 = stackalloc byte[4];
        while (i < word.Length)
        {
            var rune = Rune.GetRuneAt(word, i);
            int width = rune.Utf16SequenceLength;
            if (_vocab.ContainsKey(word.Substring(i, width))) { i += width; continue; }
            if (i > runStart) ids.AddRange(_bpe.EncodeToIds(word[runStart..i], considerPreTokenization: false, considerNormalization: false));
            int n = rune.EncodeToUtf8(utf8);
            var bytes = new List<int>(n);
            for (int k = 0; k < n && _byteFallback; k++)
                if (_vocab.TryGetValue(TokenBytes.Hex(utf8.Slice(k, 1)), out int b)) bytes.Add(b);
            if (_byteFallback && bytes.Count == n) ids.AddRange(bytes);
            else if (_unkId is int unk && !(_fuseUnk && ids.Count > 0 && ids[^1] == unk)) ids.Add(unk);
            i += width;
            runStart = i;
        }
        if (word.Length > runStart) ids.AddRange(_bpe.EncodeToIds(word[runStart..], considerPreTokenization: false, considerNormalization: false));
    }

    public override string Decode(int id)
    {
        CheckId(id);
        string token = _tokens[id] ?? "";
        if (_added.Contains(id)) return token;
        if (_byteLevel) return ByteLevelAlphabet.ToBytes(token) is { } bytes ? TokenBytes.Display(bytes) : token;
        return TokenBytes.DisplayMetaspacePiece(token);
    }

    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : Array.IndexOf(_tokens, token) is >= 0 and var i ? i : null;
}
