using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Evaluation;

/// <summary>The windows of one evaluation and how each model is fed them: the text (or ids) into windows by the BOS mode,
/// window length and stride, checked against both models (context, ids below the vocabulary) before anything runs.</summary>
internal sealed class EvalInput
{
    private EvalInput() { }

    public required IReadOnlyList<EvalWindow> Windows { get; init; }
    /// <summary>Ids in front of every window's text for a model that does not have them baked in.</summary>
    public required IReadOnlyList<int> Prefix { get; init; }
    public string? PrefixSource { get; init; }
    public required string Source { get; init; }
    public required long StreamTokens { get; init; }
    public long DroppedTail { get; init; }
    public required int Window { get; init; }
    public int? Stride { get; init; }
    public required EvalBosMode Resolved { get; init; }
    public required string BosReason { get; init; }
    public TextTokenizer? Tokenizer { get; init; }
    /// <summary>Lines for the user (tokenizer notes, choices the run made).</summary>
    public List<string> Notes { get; init; } = [];

    /// <summary>What <paramref name="model"/> is fed for <paramref name="window"/>: the text alone when the prefix is baked into it.</summary>
    public int[] Fed(EvaluatedModel model, EvalWindow window) =>
        model.SinkPrefix is not null || Prefix.Count == 0 ? window.Text : [.. Prefix, .. window.Text];

    public static EvalInput Prepare(EvalRequest request, EvaluatedModel model, EvaluatedModel? reference)
    {
        var sink = model.SinkPrefix ?? reference?.SinkPrefix;
        string? sinkOwner = model.SinkPrefix is not null ? model.Path : reference?.SinkPrefix is not null ? reference.Path : null;
        var input = model.IsEncoder ? Encoder(request, model, reference) : request.Text is not null ? DecoderText(request, model, reference, sink, sinkOwner) : DecoderIds(request, sink, sinkOwner);
        foreach (var m in new[] { model, reference })
        {
            if (m is null) continue;
            if (m.Context is { } context && input.Window > context.Value)
                throw new EvaluationInputException($"{m.Path}: a window of {input.Window} positions exceeds the model's context of {context.Value} ({context.Source}); lower the window");
            if (m.IdLimit is int limit)
                foreach (var w in input.Windows)
                    foreach (int id in input.Fed(m, w))
                        if (id >= limit)
                            throw new EvaluationInputException($"{input.Source}: token id {id} (window {w.Index}) is outside the vocabulary of {m.Path} ({limit} tokens); the ids or the tokenizer do not match the model");
        }
        return input;
    }

    private static EvalInput DecoderText(EvalRequest request, EvaluatedModel model, EvaluatedModel? reference, IReadOnlyList<int>? sink, string? sinkOwner)
    {
        string textPath = request.Text!;
        var tokenizer = LoadTokenizer(request, model, reference);
        var bos = BosPolicy.Resolve(BosMode.Auto, tokenizer);
        var mode = request.Bos;
        string reason;
        if (sink is not null)
        {
            if (mode is EvalBosMode.Document or EvalBosMode.Off)
                throw new EvaluationInputException($"{sinkOwner}: has a baked sink prefix, so every window starts with it; --bos {mode.ToString().ToLowerInvariant()} cannot apply (use auto or window)");
            mode = EvalBosMode.Window;
            reason = $"the sink prefix [{string.Join(",", sink)}] baked into {sinkOwner} starts every window (fed to a model without it)";
        }
        else if (mode == EvalBosMode.Auto)
        {
            mode = bos.Prepend ? EvalBosMode.Window : EvalBosMode.Off;
            reason = bos.Reason;
        }
        else reason = $"--bos {mode.ToString().ToLowerInvariant()}";
        if (mode is EvalBosMode.Window or EvalBosMode.Document && sink is null && bos.BosId is null)
            throw new EvaluationInputException($"{tokenizer.Source}: defines no BOS token; --bos {mode.ToString().ToLowerInvariant()} needs one");
        IReadOnlyList<int> prefix = sink ?? (mode == EvalBosMode.Window ? [bos.BosId!.Value] : []);

        int window = request.Window ?? DefaultWindow(model, reference);
        int textLength = window - prefix.Count;
        if (textLength < 2)
            throw new EvaluationInputException($"a window of {window} positions leaves {textLength} text token(s) after the {prefix.Count}-token prefix; at least 2 are needed");
        int stride = request.Stride ?? textLength;
        if (stride > textLength)
            throw new EvaluationInputException($"the stride {stride} is longer than the {textLength} text tokens of a window: tokens between windows would never be scored");
        string text = CorpusText.Read(textPath);
        if (text.Trim().Length == 0) throw new EvaluationInputException($"{textPath}: is empty: no text to evaluate on");
        var stream = TextStream.Build(text, tokenizer, mode == EvalBosMode.Document, bos.BosId, request.MaxTokens);
        var (windows, tail) = EvalWindows.Strided(stream, textLength, stride);
        if (windows.Count == 0)
            throw new EvaluationInputException($"{textPath}: {stream.Length} tokens{(request.MaxTokens is int m && stream.Length == m ? " (--max-tokens)" : "")}, fewer than one window's {textLength} text tokens (window {window}); give more text or a smaller window");
        return new EvalInput
        {
            Windows = windows, Prefix = prefix, PrefixSource = sink is not null ? $"sink prefix of {sinkOwner}" : prefix.Count > 0 ? "bos" : null,
            Source = textPath, StreamTokens = stream.Length, DroppedTail = tail, Window = window, Stride = stride, Resolved = mode, BosReason = reason,
            Tokenizer = tokenizer, Notes = [.. tokenizer.Notes],
        };
    }

    private static EvalInput DecoderIds(EvalRequest request, IReadOnlyList<int>? sink, string? sinkOwner)
    {
        var given = IdsFile.Read(request.Ids!);
        if (request.Window is not null || request.Stride is not null || request.MaxTokens is not null)
            throw new EvaluationInputException($"{request.Ids}: ids windows are scored exactly as given; the window, stride and token budget apply to a text");
        var windows = EvalWindows.AsGiven(given, sink ?? [], request.Ids!);
        IReadOnlyList<int> prefix = sink ?? [];
        return new EvalInput
        {
            Windows = windows, Prefix = prefix, PrefixSource = sink is null ? null : $"sink prefix of {sinkOwner}", Source = request.Ids!,
            StreamTokens = given.Sum(g => (long)g.Length), Window = windows.Max(w => w.Text.Length + prefix.Count), Resolved = EvalBosMode.Off,
            BosReason = sink is null ? "ids fed as given" : $"ids fed as given; a window starting with the sink prefix [{string.Join(",", sink)}] of {sinkOwner} has it removed for that model",
        };
    }

    private static EvalInput Encoder(EvalRequest request, EvaluatedModel model, EvaluatedModel? reference)
    {
        IReadOnlyList<EvalWindow> windows;
        TextTokenizer? tokenizer = null;
        int window;
        long stream;
        string source;
        if (request.Text is string textPath)
        {
            tokenizer = LoadTokenizer(request, model, reference);
            window = request.Window ?? DefaultWindow(model, reference);
            var corpus = CalibrationCorpus.EncoderSegmentsFromTextFile(textPath, tokenizer, new CorpusSettings(window, request.MaxTokens));
            windows = corpus.Windows.Select(w => new EvalWindow(w.Index, w.Ids, 0, w.Sequence)).ToArray();
            stream = corpus.TotalTokens;
            source = textPath;
        }
        else
        {
            var given = IdsFile.Read(request.Ids!);
            windows = given.Select((g, i) => new EvalWindow(i, g, 0, i)).ToArray();
            window = given.Max(g => g.Length);
            stream = given.Sum(g => (long)g.Length);
            source = request.Ids!;
        }
        return new EvalInput
        {
            Windows = windows, Prefix = [], Source = source, StreamTokens = stream, Window = window, Resolved = EvalBosMode.Off,
            BosReason = "encoder: [CLS] ... [SEP] segments of whole sentences, no BOS", Tokenizer = tokenizer, Notes = [.. tokenizer?.Notes ?? []],
        };
    }

    /// <summary>--tokenizer, else the one beside the model, else the one beside the reference (a rewritten model's folder may lack it).</summary>
    private static TextTokenizer LoadTokenizer(EvalRequest request, EvaluatedModel model, EvaluatedModel? reference)
    {
        if (request.Tokenizer is not null || reference is null) return TokenizerLocator.Load(request.Tokenizer, model.Path);
        try { return TokenizerLocator.Load(null, model.Path); }
        catch (TokenizerNotFoundException) { return TokenizerLocator.Load(null, reference.Path); }
    }

    private static int DefaultWindow(EvaluatedModel model, EvaluatedModel? reference)
    {
        long context = Math.Min(model.Context?.Value ?? long.MaxValue, reference?.Context?.Value ?? long.MaxValue);
        return (int)Math.Min(context, ModelEvaluator.DefaultWindow);
    }

    public EvalSettings Settings(EvalRequest request, SessionSettings session) => new(
        request.Text is null ? null : Path.GetFullPath(request.Text), request.Text is null ? null : ModelEvaluator.Sha256(request.Text),
        request.Ids is null ? null : Path.GetFullPath(request.Ids), Tokenizer?.Source, Tokenizer?.Kind,
        Window, Stride, Window - Prefix.Count, request.MaxTokens,
        request.Bos.ToString().ToLowerInvariant(), Resolved.ToString().ToLowerInvariant(), BosReason, Resolved == EvalBosMode.Document, Prefix, PrefixSource,
        ScoringRule(), request.BatchSize, request.Device.ToString().ToLowerInvariant(), session.Optimization.ToString(), request.Latency);

    private string ScoringRule() => Windows.Count > 0 && Windows[0].FirstTarget == 0
        ? "encoder: every token's hidden state compared"
        : "each window's text tokens after the first are scored (predicted from the window before them), except those an earlier " +
          "overlapping window scored; the window prefix (BOS or a baked sink prefix) and the first text token are context only";
}
