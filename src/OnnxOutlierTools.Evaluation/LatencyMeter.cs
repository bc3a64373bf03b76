using System.Diagnostics;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Evaluation;

/// <summary>Prompt latency (one run of a window, batch 1) and, for KV-cache decoders, per-token decode latency: a prompt of
/// all but the last <see cref="LatencySettings.DecodeTokens"/> tokens, then those tokens one per run, each run fed the
/// previous run's present caches (copied to the host, as a runtime without device-side binding does). Inputs are built
/// before the clock starts; warm-up runs are untimed; the figures are medians over the timed runs (for decode: over every
/// timed step).</summary>
internal static class LatencyMeter
{
    public static LatencyResult Measure(EvaluatedModel model, int[] window, LatencySettings settings)
    {
        var session = model.Session;
        var plan = FeedPlan.Create(model.Path, session.Inputs, session.OutputNames, model.TokenInput);
        string output = model.LogitsOutput ?? model.EmbeddingOutput!;
        if (plan.StepMode) throw new EvaluationInputException($"{model.Path}: a one-token step model; latency is measured on models that take a whole prompt");

        var promptFeeds = plan.Build(1, window.Length, window, 0, null);
        var prompt = new List<double>();
        for (int r = 0; r < settings.Warmup + settings.Repetitions; r++)
        {
            var clock = Stopwatch.StartNew();
            using (session.RunWithoutCopy(promptFeeds, [output])) { }
            if (r >= settings.Warmup) prompt.Add(clock.Elapsed.TotalMilliseconds);
        }

        var pasts = plan.Feeds.Where(f => f.Kind == FeedKind.PastCache).Select(f => f.Input.Name).ToHashSet(StringComparer.Ordinal);
        var presentToPast = session.OutputNames.Where(o => FeedPlan.PastNameOf(o) is { } p && pasts.Contains(p)).ToDictionary(o => o, o => FeedPlan.PastNameOf(o)!);
        int decode = Math.Min(settings.DecodeTokens, window.Length - 1);
        double? stepMs = null;
        if (model.IsEncoder || pasts.Count == 0 || presentToPast.Count != pasts.Count || decode < 1)
            decode = 0;
        else
        {
            var steps = new List<double>();
            var requested = new[] { output }.Concat(presentToPast.Keys).ToArray();
            int promptLength = window.Length - decode;
            for (int r = 0; r < settings.Warmup + settings.Repetitions; r++)
            {
                var cache = Run(window.AsSpan(0, promptLength), 0, null);
                for (int t = promptLength; t < window.Length; t++)
                {
                    var feeds = plan.Build(1, 1, window.AsSpan(t, 1), t, cache);
                    var clock = Stopwatch.StartNew();
                    using var outputs = session.RunWithoutCopy(feeds, requested);
                    double ms = clock.Elapsed.TotalMilliseconds;
                    if (r >= settings.Warmup) steps.Add(ms);
                    cache = Caches(outputs);
                }
            }
            stepMs = Median(steps);

            Dictionary<string, TensorData> Run(ReadOnlySpan<int> ids, int past, IReadOnlyDictionary<string, TensorData>? pastCache)
            {
                using var outputs = session.RunWithoutCopy(plan.Build(1, ids.Length, ids, past, pastCache), requested);
                return Caches(outputs);
            }

            Dictionary<string, TensorData> Caches(SessionOutputs outputs) =>
                presentToPast.ToDictionary(p => p.Value, p => new TensorData(p.Value, outputs[p.Key].ToArrayTensor()));
        }
        double promptMs = Median(prompt);
        return new LatencyResult(window.Length, promptMs, prompt.Min(), window.Length / (promptMs / 1000), decode, stepMs,
            stepMs is double s ? 1000 / s : null, settings.Warmup, settings.Repetitions);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
