using System.Diagnostics;
using System.Security.Cryptography;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Evaluation;

/// <summary>
/// Evaluates a model on ONNX Runtime, optionally against a reference model on the same windows. Decoders: perplexity =
/// exp(mean next-token NLL) over the scored tokens (<see cref="EvalWindows"/>), and against the reference KL(reference ||
/// model) and top-1 agreement at the same positions; encoders: cosine of the hidden states to the reference's, per token
/// and mean-pooled; optionally latency (<see cref="LatencyMeter"/>). A model with a baked sink prefix (<c>mitigate
/// --sink-bias</c>) is fed each window's text without the prefix, a model without one the prefix + text, so both are
/// scored on the same tokens with the same context. All metric arithmetic is float64.
/// </summary>
public static class ModelEvaluator
{
    public const int DefaultWindow = 512;

    public static EvalResult Evaluate(EvalRequest request, IProgress<CalibrationProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        if ((request.Text is null) == (request.Ids is null))
            throw new EvaluationInputException(request.Text is null ? "give the evaluation input: a text or an ids file" : "give a text or an ids file, not both");
        if (request.BatchSize < 1) throw new EvaluationInputException($"the batch size must be at least 1, not {request.BatchSize}");
        if (request.Window is int w0 && w0 < 2) throw new EvaluationInputException($"the window must be at least 2 tokens, not {w0}");
        if (request.Stride is int s0 && s0 < 1) throw new EvaluationInputException($"the stride must be at least 1, not {s0}");
        if (request.MaxTokens is int m0 && m0 < 1) throw new EvaluationInputException($"the token budget must be at least 1, not {m0}");
        request.Latency?.Validate();

        var notes = new List<string>();
        var settings = new SessionSettings { Device = request.Device, Optimization = request.Optimization, OnDeviceNote = notes.Add };
        using var model = EvaluatedModel.Open(request.Model, settings);
        using var reference = request.Reference is null ? null : EvaluatedModel.Open(request.Reference, settings);
        CheckPair(model, reference);
        var input = EvalInput.Prepare(request, model, reference);

        var watch = Stopwatch.StartNew();
        long total = input.Windows.Sum(x => (long)x.Text.Length), done = 0;
        int windowsDone = 0;
        void Report(IEnumerable<EvalWindow> finished)
        {
            foreach (var f in finished) { done += f.Text.Length; windowsDone++; }
            progress?.Report(new CalibrationProgress(done, total, windowsDone, input.Windows.Count, watch.Elapsed));
        }

        PerplexityPair? perplexity = null;
        DivergenceResult? divergence = null;
        EmbeddingSimilarity? embedding = null;
        long scored;
        if (model.IsEncoder)
        {
            var comparison = reference is null ? null : new EmbeddingComparison(model.EmbeddingOutput!);
            foreach (var window in input.Windows)
            {
                var a = HiddenStates(model, window.Text);
                if (comparison is not null) comparison.Add(a, HiddenStates(reference!, window.Text), window.Text.Length);
                Report([window]);
            }
            embedding = comparison?.Result();
            scored = input.Windows.Sum(x => (long)x.Text.Length);
            if (reference is null) notes.Add("an encoder without --ref: no metric but latency (the cosine needs a reference)");
        }
        else
        {
            var scorer = ScoreDecoders(model, reference, input, request.BatchSize, Report);
            perplexity = new PerplexityPair(scorer.Model, scorer.Reference);
            divergence = scorer.Divergence;
            scored = scorer.Model.ScoredTokens;
        }

        LatencyPair? latency = null;
        if (request.Latency is { } latencySettings)
        {
            var first = input.Windows[0];
            latency = new LatencyPair(LatencyMeter.Measure(model, input.Fed(model, first), latencySettings),
                reference is null ? null : LatencyMeter.Measure(reference, input.Fed(reference, first), latencySettings));
        }

        notes.AddRange(input.Notes);
        return new EvalResult
        {
            Model = Facts(model),
            Reference = reference is null ? null : Facts(reference),
            Settings = input.Settings(request, settings),
            Windows = new WindowFacts(input.Windows.Count, input.StreamTokens, input.DroppedTail, scored,
                input.Windows.Sum(x => (long)input.Fed(model, x).Length)),
            Perplexity = perplexity,
            Divergence = divergence,
            Embedding = embedding,
            Latency = latency,
            Notes = notes.Distinct().ToArray(),
        };
    }

    private static void CheckPair(EvaluatedModel model, EvaluatedModel? reference)
    {
        if (reference is null) return;
        if (model.IsEncoder != reference.IsEncoder)
            throw new EvaluationInputException($"{reference.Path}: the reference is {(reference.IsEncoder ? "an encoder" : "a decoder")}, the model {model.Path} {(model.IsEncoder ? "an encoder" : "a decoder")}: not a reference for it");
        if (model.Vocabulary is int a && reference.Vocabulary is int b && a != b)
            throw new EvaluationInputException($"{reference.Path}: the reference's vocabulary has {b} tokens, the model's ({model.Path}) {a}: not a reference for this model");
        if (model.SinkPrefix is { } p && reference.SinkPrefix is { } q && !p.SequenceEqual(q))
            throw new EvaluationInputException($"{reference.Path}: its baked sink prefix [{string.Join(",", q)}] differs from the model's [{string.Join(",", p)}]; the two cannot be fed the same windows");
    }

    private static NextTokenScorer ScoreDecoders(EvaluatedModel model, EvaluatedModel? reference, EvalInput input, int batchSize, Action<IEnumerable<EvalWindow>> report)
    {
        var modelLogits = new NextTokenLogits(model.Session, model.LogitsOutput, model.TokenInput);
        var referenceLogits = reference is null ? null : new NextTokenLogits(reference.Session, reference.LogitsOutput, reference.TokenInput);
        if (modelLogits.StepMode || referenceLogits?.StepMode == true) batchSize = 1;
        // A baked prefix is a non-empty past for every prompt, and ORT's GroupQueryAttention refuses a multi-token run after a
        // past at batch > 1: such models run one window at a time.
        if (batchSize > 1 && (model.SinkPrefix is not null || reference?.SinkPrefix is not null))
        {
            batchSize = 1;
            input.Notes.Add("a model has a baked sink prefix: windows run one at a time (GroupQueryAttention takes no batched prompt after a past)");
        }
        var scorer = new NextTokenScorer(reference is not null);
        foreach (var batch in Batches(input.Windows, batchSize))
        {
            var rowsModel = batch.Select(x => input.Fed(model, x)).ToArray();
            var (lm, vocab) = modelLogits.Run(rowsModel);
            int[][]? rowsReference = null;
            float[] lr = [];
            if (referenceLogits is not null)
            {
                rowsReference = batch.Select(x => input.Fed(reference!, x)).ToArray();
                (lr, int vocabReference) = referenceLogits.Run(rowsReference);
                if (vocabReference != vocab)
                    throw new EvaluationInputException($"{reference!.Path}: the reference's logits have {vocabReference} entries, the model's ({model.Path}) {vocab}: mismatched vocabularies");
            }
            for (int r = 0; r < batch.Length; r++)
            {
                var window = batch[r];
                int offsetModel = rowsModel[r].Length - window.Text.Length, offsetReference = rowsReference is null ? 0 : rowsReference[r].Length - window.Text.Length;
                for (int j = window.FirstTarget; j < window.Text.Length; j++)
                {
                    int target = window.Text[j];
                    if (target >= vocab) throw new EvaluationInputException($"{input.Source}: token id {target} (window {window.Index}) is outside the model's {vocab} logits");
                    long rowModel = (long)r * rowsModel[r].Length + offsetModel + j - 1;
                    var pm = lm.AsSpan(checked((int)(rowModel * vocab)), vocab);
                    var pr = ReadOnlySpan<float>.Empty;
                    if (rowsReference is not null)
                    {
                        long rowReference = (long)r * rowsReference[r].Length + offsetReference + j - 1;
                        pr = lr.AsSpan(checked((int)(rowReference * vocab)), vocab);
                    }
                    scorer.Add(pm, pr, target, window.Index, j);
                }
            }
            report(batch);
        }
        return scorer;
    }

    /// <summary>Consecutive windows of one text length, at most <paramref name="size"/> together.</summary>
    private static IEnumerable<EvalWindow[]> Batches(IReadOnlyList<EvalWindow> windows, int size)
    {
        var current = new List<EvalWindow>();
        foreach (var w in windows)
        {
            if (current.Count > 0 && (current.Count == size || current[0].Text.Length != w.Text.Length))
            {
                yield return current.ToArray();
                current.Clear();
            }
            current.Add(w);
        }
        if (current.Count > 0) yield return current.ToArray();
    }

    private static float[] HiddenStates(EvaluatedModel model, int[] ids)
    {
        var plan = FeedPlan.Create(model.Path, model.Session.Inputs, model.Session.OutputNames, model.TokenInput);
        using var outputs = model.Session.RunWithoutCopy(plan.Build(1, ids.Length, ids, 0, null), [model.EmbeddingOutput!]);
        return outputs[0].ToSingleArray();
    }

    private static EvaluatedModelFacts Facts(EvaluatedModel m) => new(m.Path, m.IsEncoder ? "encoder" : "decoder", m.Vocabulary, m.SinkPrefix,
        m.Session.Device.ToString().ToLowerInvariant(), m.Session.DeviceNote);

    /// <summary>SHA-256 of a file, lower-case hex (the text a result was computed on).</summary>
    internal static string Sha256(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));
}
