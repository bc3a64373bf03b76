using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>What the CLI collects for the calibration input (<c>--text</c> or <c>--ids</c>, <c>--tokenizer</c>,
/// <c>--seq-len</c>, <c>--max-tokens</c>, <c>--bos</c>) plus the facts about the model the caller knows.</summary>
/// <param name="ModelPath">The model file; the tokenizer and its configs are searched beside it.</param>
/// <param name="IsEncoder">The model is an encoder (BERT-like): [CLS] ... [SEP] segments, no BOS.</param>
/// <param name="ContextLength">The model's context limit and where it came from (e.g. "genai_config.json
/// context_length"), checked against the window length; null when unknown.</param>
/// <param name="EmbeddingRows">Rows of the token embedding; every id fed must be below it. Null when unknown.</param>
public sealed record CalibrationRequest(
    string ModelPath,
    string? TextPath,
    string? IdsPath,
    string? TokenizerPath,
    int SeqLen,
    int? MaxTokens,
    BosMode Bos,
    bool IsEncoder,
    (int Length, string Source)? ContextLength = null,
    int? EmbeddingRows = null);

/// <summary>The prepared input: the windows, the tokenizer when there is one (for token texts in reports),
/// and a description of every choice, for report.json.</summary>
public sealed record PreparedCalibration(CalibrationCorpus Corpus, TextTokenizer? Tokenizer, CalibrationInputDescription Description);

/// <summary>The settings and choices behind a corpus, enough to reproduce it.</summary>
public sealed record CalibrationInputDescription(
    string Source, string SourceKind, string? Tokenizer, string? TokenizerKind, int? TokenizerVocabSize,
    int SeqLen, int? MaxTokens, string BosMode, bool BosPrepended, int? BosId, string BosReason,
    int Windows, long TotalTokens, int AvailableTokens, bool BudgetReached, IReadOnlyList<string> Notes);

/// <summary>Turns a <see cref="CalibrationRequest"/> into windows, with every input check of the calibration
/// side: exactly one of --text / --ids, a tokenizer for text (found beside the model when not given), the
/// window length against the model's context, the ids against the model's embedding rows.</summary>
public static class CalibrationInputs
{
    public static PreparedCalibration Prepare(CalibrationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if ((request.TextPath is null) == (request.IdsPath is null))
            throw new CalibrationInputException("--text/--ids", request.TextPath is null ? "give the calibration input: --text FILE or --ids FILE.json" : "give --text or --ids, not both");
        if (request.ContextLength is var (context, contextSource))
            CalibrationCorpus.ValidateSeqLen(request.SeqLen, context, request.ModelPath, contextSource);
        var settings = new CorpusSettings(request.SeqLen, request.MaxTokens);

        TextTokenizer? tokenizer;
        CalibrationCorpus corpus;
        if (request.TextPath is string text)
        {
            tokenizer = TokenizerLocator.Load(request.TokenizerPath, request.ModelPath);
            corpus = request.IsEncoder
                ? CalibrationCorpus.EncoderSegmentsFromTextFile(text, tokenizer, settings)
                : CalibrationCorpus.FromTextFile(text, tokenizer, settings, BosPolicy.Resolve(request.Bos, tokenizer));
        }
        else
        {
            // Pre-tokenized ids need no tokenizer; one given or found beside the model still names the tokens and the BOS.
            var facts = TokenizerLocator.ModelFacts(request.ModelPath);
            tokenizer = request.TokenizerPath is not null ? TokenizerLocator.Load(request.TokenizerPath, request.ModelPath) : TryLoad(request.ModelPath, facts);
            var configBos = facts.Select(f => f.BosTokenId).FirstOrDefault(b => b is not null);
            var bos = request.IsEncoder ? BosDecision.None("encoder: ids fed as given") : BosPolicy.Resolve(request.Bos, tokenizer, configBos);
            corpus = CalibrationCorpus.FromIdsFile(request.IdsPath!, settings, bos);
        }
        if (request.EmbeddingRows is int rows) corpus.ValidateIds(rows, request.ModelPath);
        return new PreparedCalibration(corpus, tokenizer, Describe(request, corpus, tokenizer));
    }

    private static TextTokenizer? TryLoad(string modelPath, IReadOnlyList<ModelFolderFacts> facts)
    {
        try { return TokenizerLocator.LoadFile(TokenizerLocator.Find(null, modelPath), facts); }
        catch (TokenizerNotFoundException) { return null; }
    }

    private static CalibrationInputDescription Describe(CalibrationRequest request, CalibrationCorpus corpus, TextTokenizer? tokenizer) => new(
        corpus.Source, request.TextPath is not null ? "text" : "ids", tokenizer?.Source, tokenizer?.Kind, tokenizer?.VocabSize,
        request.SeqLen, request.MaxTokens, request.Bos.ToString().ToLowerInvariant(),
        corpus.Bos?.Prepend ?? false, corpus.Bos?.BosId, corpus.Bos?.Reason ?? "encoder segments: [CLS] ... [SEP], no BOS",
        corpus.Windows.Count, corpus.TotalTokens, corpus.AvailableTokens, corpus.BudgetReached, tokenizer?.Notes ?? []);
}
