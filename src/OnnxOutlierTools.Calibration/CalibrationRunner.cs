using System.Diagnostics;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Calibration;

/// <summary>Progress of a calibration run, reported after every batch.</summary>
public sealed record CalibrationProgress(long TokensDone, long TokensTotal, int WindowsDone, int WindowsTotal, TimeSpan Elapsed)
{
    public double TokensPerSecond => Elapsed.TotalSeconds > 0 ? TokensDone / Elapsed.TotalSeconds : 0;
}

public sealed record CalibrationRunOptions
{
    /// <summary>Windows of equal length run together, at most this many per batch.</summary>
    public int BatchSize { get; init; } = 1;
    public IProgress<CalibrationProgress>? Progress { get; init; }
    public CancellationToken Cancellation { get; init; }
}

/// <summary>Streams calibration windows through a probed model on ONNX Runtime and merges each run's probe outputs into
/// <see cref="CalibrationStatistics"/>: only the statistics are fetched (the probed tensors never leave the session), and
/// memory is bounded by the statistics, not by the corpus. Windows are never padded: a batch holds windows of one length,
/// so no padded position can enter the statistics.</summary>
public static class CalibrationRunner
{
    public static CalibrationStatistics Run(ModelSession session, ProbeManifest manifest, IReadOnlyList<int[]> windows,
        CalibrationRunOptions? options = null, string? tokenInput = null)
    {
        options ??= new CalibrationRunOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        if (windows.Count == 0 || windows.All(w => w.Length == 0)) throw new CalibrationException("no calibration tokens to run");
        var plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames, tokenInput);
        if (plan.FixedSequenceLength is long fixedLength && fixedLength != 1 && windows.Any(w => w.Length != fixedLength))
            throw new CalibrationException($"{session.ModelPath}: the model takes exactly {fixedLength} tokens per sequence; use --seq-len {fixedLength}");
        var statistics = new CalibrationStatistics(manifest);
        var probeOutputs = ProbeOutputDecoder.OutputNames(manifest);
        long total = windows.Sum(w => (long)w.Length), done = 0;
        var clock = Stopwatch.StartNew();
        int windowsDone = 0;
        foreach (var batch in Batches(windows, plan.StepMode ? 1 : options.BatchSize))
        {
            options.Cancellation.ThrowIfCancellationRequested();
            if (plan.StepMode) RunSteps(session, plan, probeOutputs, statistics, batch.Index, windows[batch.Index], options.Cancellation);
            else RunBatch(session, plan, probeOutputs, statistics, batch.Indices, windows);
            done += batch.Indices.Sum(i => (long)windows[i].Length);
            windowsDone += batch.Indices.Count;
            options.Progress?.Report(new CalibrationProgress(done, total, windowsDone, windows.Count, clock.Elapsed));
        }
        statistics.Tokens = total;
        statistics.Windows = windows.Count;
        return statistics;
    }

    private static void RunBatch(ModelSession session, FeedPlan plan, IReadOnlyList<string> probeOutputs, CalibrationStatistics statistics,
        IReadOnlyList<int> rows, IReadOnlyList<int[]> windows)
    {
        int sequence = windows[rows[0]].Length;
        var ids = new int[rows.Count * sequence];
        for (int r = 0; r < rows.Count; r++) windows[rows[r]].CopyTo(ids, r * sequence);
        var feeds = plan.Build(rows.Count, sequence, ids, 0, null);
        using var outputs = session.RunWithoutCopy(feeds, probeOutputs);
        ProbeOutputDecoder.Merge(statistics, outputs, new BatchTokens(rows, sequence, ids));
    }

    /// <summary>A one-token step model: token t runs after a cache of t positions, its presents become the next pasts.</summary>
    private static void RunSteps(ModelSession session, FeedPlan plan, IReadOnlyList<string> probeOutputs, CalibrationStatistics statistics,
        int window, int[] ids, CancellationToken cancellation)
    {
        var requested = probeOutputs.Concat(plan.PresentToPast.Keys).ToArray();
        Dictionary<string, TensorData>? cache = null;
        for (int t = 0; t < ids.Length; t++)
        {
            cancellation.ThrowIfCancellationRequested();
            var feeds = plan.Build(1, 1, ids.AsSpan(t, 1), t, cache);
            using var outputs = session.RunWithoutCopy(feeds, requested);
            ProbeOutputDecoder.Merge(statistics, outputs, new BatchTokens([window], 1, [ids[t]], t));
            cache = plan.PresentToPast.ToDictionary(p => p.Value, p => new TensorData(p.Value, outputs[p.Key].ToArrayTensor()));
        }
    }

    private sealed record Batch(int Index, IReadOnlyList<int> Indices);

    /// <summary>Consecutive windows of one length, up to <paramref name="size"/> per batch.</summary>
    private static IEnumerable<Batch> Batches(IReadOnlyList<int[]> windows, int size)
    {
        var current = new List<int>();
        for (int i = 0; i < windows.Count; i++)
        {
            if (windows[i].Length == 0) continue;
            if (current.Count > 0 && (current.Count == size || windows[current[0]].Length != windows[i].Length))
            {
                yield return new Batch(current[0], current);
                current = [];
            }
            current.Add(i);
        }
        if (current.Count > 0) yield return new Batch(current[0], current);
    }
}
