using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// WordPiece (BERT) through Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/>: a vocab.txt (one token
/// a line, the line number is the id) or a tokenizer.json WordPiece model. Lower-casing follows
/// do_lower_case in tokenizer_config.json, then the tokenizer.json's BertNormalizer, and otherwise the
/// vocabulary itself: an uncased vocabulary has no upper-case letter outside its [BRACKETED] specials.
/// </summary>
internal sealed class WordPieceTextTokenizer : TextTokenizer
{
    private readonly BertTokenizer _bert;
    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;
    private readonly string _kind;

    private WordPieceTextTokenizer(string path, string kind, BertTokenizer bert, string[] tokens, bool lowerCase, string lowerCaseReason) : base(path)
    {
        _bert = bert;
        _tokens = tokens;
        _kind = kind;
        _ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++) _ids.TryAdd(tokens[i], i);
        LowerCase = lowerCase;
        AddNote($"{path}: lower-casing {(lowerCase ? "on" : "off")} ({lowerCaseReason})");
    }

    public override string Kind => _kind;
    public override int VocabSize => _tokens.Length;
    public bool LowerCase { get; }
    internal override bool FormatPrependsBos => false;

    public static WordPieceTextTokenizer FromVocabFile(string path, TokenizerConfig config)
    {
        string[] tokens;
        try { tokens = File.ReadAllLines(path, Encoding.UTF8); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { throw new CalibrationInputException(path, $"cannot be read ({ex.Message})", ex); }
        // A trailing empty line is the file's last newline, not a token.
        if (tokens.Length > 0 && tokens[^1].Length == 0) tokens = tokens[..^1];
        if (tokens.Length == 0) throw new CalibrationInputException(path, "is empty: not a WordPiece vocab.txt");
        var (lower, reason) = config.DoLowerCase is bool b ? (b, $"{TokenizerConfig.ConfigName} do_lower_case") : InferLowerCase(tokens);
        return Create(path, TokenizerKinds.WordPiece, tokens, lower, reason, stripAccents: lower, chinese: true);
    }

    public static WordPieceTextTokenizer FromTokenizerJson(string path, JsonElement model, List<AddedToken> added, HfPipeline pipeline)
    {
        var vocab = HfTokenizerJson.Vocabulary(path, model);
        foreach (var a in added) vocab.TryAdd(a.Content, a.Id);
        var tokens = new string[vocab.Values.Max() + 1];
        foreach (var (token, id) in vocab) tokens[id] = token;
        int hole = Array.IndexOf(tokens, null);
        if (hole >= 0) throw new CalibrationInputException(path, $"WordPiece vocabulary has no token with id {hole} (ids must run from 0 without gaps)");
        if (HfTokenizerJson.String(model, "continuing_subword_prefix") is { } prefix && prefix != "##")
            throw pipeline.Unsupported($"WordPiece continuing_subword_prefix \"{prefix}\"");
        var bert = pipeline.Normalizers.FirstOrDefault(n => HfTokenizerJson.String(n, "type") == "BertNormalizer");
        foreach (var n in pipeline.Normalizers)
            if (HfTokenizerJson.String(n, "type") is not ("BertNormalizer" or "Lowercase")) throw pipeline.Unsupported($"normalizer \"{HfTokenizerJson.String(n, "type")}\" in a WordPiece pipeline");
        foreach (var p in pipeline.PreTokenizers)
            if (HfTokenizerJson.String(p, "type") is not ("BertPreTokenizer" or "Whitespace" or "WhitespaceSplit")) throw pipeline.Unsupported($"pre-tokenizer \"{HfTokenizerJson.String(p, "type")}\" in a WordPiece pipeline");
        bool lower = (bert.ValueKind == JsonValueKind.Object ? HfTokenizerJson.Bool(bert, "lowercase") : null) ?? pipeline.Normalizers.Any(n => HfTokenizerJson.String(n, "type") == "Lowercase");
        bool strip = (bert.ValueKind == JsonValueKind.Object ? HfTokenizerJson.Bool(bert, "strip_accents") : null) ?? lower;
        bool chinese = (bert.ValueKind == JsonValueKind.Object ? HfTokenizerJson.Bool(bert, "handle_chinese_chars") : null) ?? true;
        return Create(path, TokenizerKinds.HfWordPiece, tokens, lower, "tokenizer.json normalizer", strip, chinese);
    }

    private static WordPieceTextTokenizer Create(string path, string kind, string[] tokens, bool lower, string reason, bool stripAccents, bool chinese)
    {
        var options = new BertOptions
        {
            LowerCaseBeforeTokenization = lower,
            RemoveNonSpacingMarks = stripAccents,
            IndividuallyTokenizeCjk = chinese,
            ApplyBasicTokenization = true,
            SplitOnSpecialTokens = true,
        };
        // BertTokenizer insists on its five special tokens; a vocabulary that spells them otherwise is refused by name.
        foreach (string special in new[] { options.UnknownToken, options.ClassificationToken, options.SeparatorToken, options.PaddingToken, options.MaskingToken })
            if (Array.IndexOf(tokens, special) < 0) throw new CalibrationInputException(path, $"WordPiece vocabulary has no {special} token");
        var stream = new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', tokens) + "\n"));
        try { return new WordPieceTextTokenizer(path, kind, BertTokenizer.Create(stream, options), tokens, lower, reason); }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new CalibrationInputException(path, $"Microsoft.ML.Tokenizers refused the WordPiece vocabulary ({ex.Message})", ex);
        }
    }

    /// <summary>Uncased BERT vocabularies hold no upper-case A-Z except in [CLS]-style specials (symbols such as
    /// "ℝ" are upper-case letters to Unicode and occur in uncased vocabularies, so only ASCII counts).</summary>
    private static (bool Lower, string Reason) InferLowerCase(string[] tokens)
    {
        string? cased = tokens.FirstOrDefault(t => !(t.StartsWith('[') && t.EndsWith(']')) && t.Any(char.IsAsciiLetterUpper));
        return cased is null ? (true, "the vocabulary has no upper-case token") : (false, $"the vocabulary is cased, e.g. \"{cased}\"");
    }

    public override int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _bert.EncodeToIds(text, addSpecialTokens: false).ToArray();
    }

    public override string Decode(int id)
    {
        CheckId(id);
        return _tokens[id];
    }

    public override int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    public override bool StartsWord(int id) => !Decode(id).StartsWith("##", StringComparison.Ordinal);

    internal override SpecialTokenIds FormatSpecials() => new(null, null, _bert.ClassificationTokenId, _bert.SeparatorTokenId, _bert.PaddingTokenId, _bert.UnknownTokenId);
}
