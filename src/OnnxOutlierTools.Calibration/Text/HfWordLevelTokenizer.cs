using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>A tokenizer.json WordLevel model (each pre-token looked up whole, else the unknown token), with
/// the Whitespace (\w+|[^\w\s]+) or WhitespaceSplit pre-tokenizer; the library has no WordLevel model and
/// the algorithm is a dictionary lookup.</summary>
internal sealed partial class HfWordLevelTokenizer : TextTokenizer
{
    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _tokens;
    private readonly AddedTokenSplitter _splitter;
    private readonly Func<string, string> _normalize;
    private readonly Func<string, IEnumerable<string>> _preTokenize;
    private readonly int? _unk;
    private readonly HfPipeline _pipeline;

    private HfWordLevelTokenizer(string path, Dictionary<string, int> vocab, List<AddedToken> added, HfPipeline pipeline, Func<string, string> normalize,
        Func<string, IEnumerable<string>> preTokenize, int? unk) : base(path)
    {
        _vocab = vocab;
        _pipeline = pipeline;
        _normalize = normalize;
        _preTokenize = preTokenize;
        _unk = unk;
        _tokens = new string[Math.Max(vocab.Values.Max(), added.Count == 0 ? -1 : added.Max(a => a.Id)) + 1];
        foreach (var (t, id) in vocab) _tokens[id] = t;
        foreach (var a in added) _tokens[a.Id] = a.Content;
        for (int i = 0; i < _tokens.Length; i++) _tokens[i] ??= "";
        _splitter = new AddedTokenSplitter(added);
    }

    public override string Kind => TokenizerKinds.HfWordLevel;
    public override int VocabSize => _tokens.Length;
    internal override bool FormatPrependsBos => false;
    internal override bool? TemplatePrependsBos(int bosId) => _pipeline.TemplateStart() is { } t ? t.StartsWithSpecial && t.Token is { } first && TokenToId(first) == bosId : null;

    [GeneratedRegex(@"\w+|[^\w\s]+", RegexOptions.CultureInvariant)]
    private static partial Regex WhitespacePattern();

    public static HfWordLevelTokenizer Create(string path, JsonElement model, List<AddedToken> added, HfPipeline pipeline)
    {
        var vocab = HfTokenizerJson.Vocabulary(path, model);
        var stages = new List<Func<string, IEnumerable<string>>>();
        foreach (var p in pipeline.PreTokenizers)
        {
            stages.Add(HfTokenizerJson.String(p, "type") switch
            {
                "Whitespace" => s => WhitespacePattern().Matches(s).Select(m => m.Value),
                "WhitespaceSplit" => s => s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries),
                "Split" => HfTextSteps.Split(pipeline, p),
                var other => throw pipeline.Unsupported($"pre-tokenizer \"{other}\" in a WordLevel pipeline"),
            });
        }
        if (stages.Count == 0) stages.Add(s => s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        string? unk = HfTokenizerJson.String(model, "unk_token");
        return new HfWordLevelTokenizer(path, vocab, added, pipeline, HfTextSteps.Normalizer(pipeline),
            s => stages.Aggregate((IEnumerable<string>)[s], (parts, stage) => parts.SelectMany(stage)),
            unk is not null && vocab.TryGetValue(unk, out int u) ? u : null);
    }

    public override int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _splitter.Encode(text, (piece, _, ids) =>
        {
            foreach (string word in _preTokenize(_normalize(piece)))
            {
                if (_vocab.TryGetValue(word, out int id)) ids.Add(id);
                else if (_unk is int unk) ids.Add(unk);
                else throw new CalibrationInputException(Source, $"word {JsonSerializer.Serialize(word)} is not in the WordLevel vocabulary and there is no unk_token");
            }
        });
    }

    public override string Decode(int id)
    {
        CheckId(id);
        return _tokens[id];
    }

    public override bool StartsWord(int id) => true;

    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : Array.IndexOf(_tokens, token) is >= 0 and var i ? i : null;
}
