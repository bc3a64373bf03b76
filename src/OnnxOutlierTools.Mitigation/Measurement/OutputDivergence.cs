using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Mitigation.Measurement;

public sealed record DivergenceOptions
{
    /// <summary>The logits output (default: "logits", else the first output whose name contains it).</summary>
    public string? LogitsOutput { get; init; }
    /// <summary>The token-id input (the structure's Inputs.InputIds; default "input_ids").</summary>
    public string? TokenInput { get; init; }
    /// <summary>Windows of one length run together, at most this many per run.</summary>
    public int BatchSize { get; init; } = 1;
}

/// <summary>One model's next-token negative log-likelihood on the windows' text.</summary>
/// <param name="NonFinitePositions">Positions whose logits hold an infinity or NaN (left out of every metric, for both models).</param>
public sealed record TextScore(double MeanNll, double Perplexity, long NonFinitePositions);

/// <summary>How far a rewritten model's next-token distributions are from the original's on the same windows, in float64.</summary>
/// <param name="Positions">Positions compared (every position of every window, less those non-finite in either model).</param>
/// <param name="ScoredTokens">Next-token predictions scored for the perplexity (position t predicts token t + 1 of its
/// window; position 0, the BOS when the windows start with one, is never a target).</param>
/// <param name="MeanKl">Mean over positions of KL(original || rewritten) in nats.</param>
/// <param name="MaxKlWindow">Window and position of <see cref="MaxKl"/>.</param>
/// <param name="Top1Agreement">Fraction of positions whose argmax token is the same (first index on ties).</param>
public sealed record DivergenceReport(
    int Windows, long Positions, long ScoredTokens, double MeanKl, double MaxKl, int MaxKlWindow, int MaxKlPosition,
    double Top1Agreement, TextScore Original, TextScore Rewritten, string LogitsOutput)
{
    public override string ToString() =>
        $"KL(original || rewritten) mean {MeanKl:G4}, max {MaxKl:G4} (window {MaxKlWindow}, position {MaxKlPosition}); top-1 agreement " +
        $"{Top1Agreement:P2} over {Positions} positions; perplexity {Original.Perplexity:F4} -> {Rewritten.Perplexity:F4} ({ScoredTokens} tokens)";
}

/// <summary>Runs an original and a rewritten model on the same calibration windows (one of the sessions may be fp16, the
/// logits are widened) and compares their next-token distributions: mean and max KL(original || rewritten), top-1
/// agreement, and the perplexity of each on the text. All arithmetic (log-softmax, KL, NLL) is float64.</summary>
public static class OutputDivergence
{
    public static DivergenceReport Measure(ModelSession original, ModelSession rewritten, IReadOnlyList<int[]> windows, DivergenceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(rewritten);
        ArgumentNullException.ThrowIfNull(windows);
        options ??= new DivergenceOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        if (windows.Count == 0 || windows.All(w => w.Length == 0)) throw new MitigationInputException("no windows to compare the models on");
        var a = new NextTokenLogits(original, options.LogitsOutput, options.TokenInput);
        var b = new NextTokenLogits(rewritten, options.LogitsOutput ?? a.Output, options.TokenInput);
        var sum = new Accumulator();
        int batchSize = a.StepMode || b.StepMode ? 1 : options.BatchSize;
        foreach (var batch in Batches(windows, batchSize))
        {
            var rows = batch.Select(i => windows[i]).ToArray();
            var (p, vocab) = a.Run(rows);
            var (q, vocabB) = b.Run(rows);
            if (vocab != vocabB) throw new MitigationInputException($"the models' logits differ in width: {vocab} and {vocabB}");
            for (int r = 0; r < rows.Length; r++)
            {
                int length = rows[r].Length;
                for (int t = 0; t < length; t++)
                {
                    long offset = ((long)r * length + t) * vocab;
                    int? target = t + 1 < length ? rows[r][t + 1] : null;
                    if (target is int id && (id < 0 || id >= vocab)) throw new MitigationInputException($"token id {id} is outside the logits' {vocab} entries");
                    sum.Add(p.AsSpan((int)offset, vocab), q.AsSpan((int)offset, vocab), target, batch[r], t);
                }
            }
        }
        return sum.Report(windows.Count(w => w.Length > 0), a.Output);
    }

    private static IEnumerable<int[]> Batches(IReadOnlyList<int[]> windows, int size)
    {
        var current = new List<int>();
        for (int i = 0; i < windows.Count; i++)
        {
            if (windows[i].Length == 0) continue;
            if (current.Count > 0 && (current.Count == size || windows[current[0]].Length != windows[i].Length))
            {
                yield return current.ToArray();
                current.Clear();
            }
            current.Add(i);
        }
        if (current.Count > 0) yield return current.ToArray();
    }

    private sealed class Accumulator
    {
        private long _positions, _scored, _agree, _nonFiniteP, _nonFiniteQ;
        private double _kl, _maxKl = double.NegativeInfinity, _nllP, _nllQ;
        private int _maxWindow = -1, _maxPosition = -1;
        private double[] _lp = [], _lq = [];

        public void Add(ReadOnlySpan<float> p, ReadOnlySpan<float> q, int? target, int window, int position)
        {
            bool finiteP = NextTokenMath.AllFinite(p), finiteQ = NextTokenMath.AllFinite(q);
            if (!finiteP) _nonFiniteP++;
            if (!finiteQ) _nonFiniteQ++;
            if (!finiteP || !finiteQ) return;
            if (_lp.Length != p.Length) { _lp = new double[p.Length]; _lq = new double[p.Length]; }
            int argP = NextTokenMath.LogSoftmax(p, _lp), argQ = NextTokenMath.LogSoftmax(q, _lq);
            double kl = NextTokenMath.Kl(_lp, _lq);
            _positions++;
            _kl += kl;
            if (kl > _maxKl) (_maxKl, _maxWindow, _maxPosition) = (kl, window, position);
            if (argP == argQ) _agree++;
            if (target is int id)
            {
                _scored++;
                _nllP -= _lp[id];
                _nllQ -= _lq[id];
            }
        }

        public DivergenceReport Report(int windows, string output)
        {
            double meanP = _scored == 0 ? double.NaN : _nllP / _scored, meanQ = _scored == 0 ? double.NaN : _nllQ / _scored;
            return new DivergenceReport(windows, _positions, _scored,
                _positions == 0 ? double.NaN : _kl / _positions, _positions == 0 ? double.NaN : _maxKl, _maxWindow, _maxPosition,
                _positions == 0 ? double.NaN : (double)_agree / _positions,
                new TextScore(meanP, Math.Exp(meanP), _nonFiniteP), new TextScore(meanQ, Math.Exp(meanQ), _nonFiniteQ), output);
        }
    }
}
