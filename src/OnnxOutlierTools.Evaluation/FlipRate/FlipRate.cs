using OnnxOutlierTools.Mitigation;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Evaluation.FlipRate;

/// <summary>How near-tie positions are chosen: by an absolute logit margin, or as the lowest fraction of the reference's margins.</summary>
public sealed record NearTieRule
{
    /// <summary>A position is a near tie when the reference's top-1 minus top-2 logit is at most this (logit units); null: use
    /// <see cref="LowestFraction"/>.</summary>
    public double? Margin { get; init; }
    /// <summary>Near ties are the positions whose reference margin is at or below the margin at this quantile of all compared
    /// positions (default 0.1: the lowest decile; equal margins at the cut are all included).</summary>
    public double LowestFraction { get; init; } = 0.1;

    public override string ToString() => Margin is double m ? $"FP32 top-1 - top-2 logit <= {m:G4}" : $"lowest {LowestFraction:P0} of FP32 top-1 - top-2 margins";
}

public sealed record FlipRateOptions
{
    public NearTieRule NearTies { get; init; } = new();
    /// <summary>The logits output (default: "logits", else the first output whose name contains it).</summary>
    public string? LogitsOutput { get; init; }
    /// <summary>The token-id input (the structure's Inputs.InputIds; default "input_ids").</summary>
    public string? TokenInput { get; init; }
    /// <summary>The candidate is fed each window without its first tokens (a sink-bias model with a baked prefix is fed the text
    /// without BOS): its position t is compared with the reference's position t + this.</summary>
    public int CandidateDropsPrefix { get; init; }
}

/// <summary>How often a model's next-token argmax differs from the reference's (FP32) on the same positions.</summary>
/// <param name="Positions">Positions compared (every position of every window, less the candidate's dropped prefix).</param>
/// <param name="Flips">Positions whose argmax differs (first index on exact ties; a non-finite candidate row counts as a flip).</param>
/// <param name="NearTiePositions">Positions the <see cref="NearTieRule"/> selects, with <paramref name="NearTieThreshold"/> the
/// reference margin they are at or below.</param>
public sealed record FlipRateReport(long Positions, long Flips, long NearTiePositions, long NearTieFlips, double NearTieThreshold,
    string NearTieRule, long NonFiniteCandidatePositions, double MedianMargin)
{
    public double FlipRate => Positions == 0 ? double.NaN : (double)Flips / Positions;
    public double NearTieFlipRate => NearTiePositions == 0 ? double.NaN : (double)NearTieFlips / NearTiePositions;

    public override string ToString() =>
        $"flip rate {FlipRate:P2} ({Flips}/{Positions}); near ties ({NearTieRule}, margin <= {NearTieThreshold:G3}) {NearTieFlipRate:P2} ({NearTieFlips}/{NearTiePositions})";
}

/// <summary>The flip rate of next-token argmax against a reference model (SCIENCE.md 3: int4 with accuracy_level 4 flips tokens on
/// models with massive activations): both models run the same calibration windows (<see cref="NextTokenLogits"/>, fed as
/// calibration feeds them), and every position compares the candidate's argmax with the reference's, overall and on the
/// near-tie positions, where the reference's top-1 minus top-2 logit margin is small (<see cref="NearTieRule"/>): those flip
/// first when a quantized model's logits move a little.</summary>
public static class FlipRateMeter
{
    public static FlipRateReport Measure(ModelSession reference, ModelSession candidate, IReadOnlyList<int[]> windows, FlipRateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(windows);
        options ??= new FlipRateOptions();
        int dropped = options.CandidateDropsPrefix;
        ArgumentOutOfRangeException.ThrowIfNegative(dropped);
        if (options.NearTies.Margin is null && !(options.NearTies.LowestFraction is > 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.NearTies.LowestFraction, "the near-tie fraction must be in (0, 1]");
        if (windows.Count == 0 || windows.All(w => w.Length <= dropped)) throw new MitigationInputException("no windows to compare the models on");
        var a = new NextTokenLogits(reference, options.LogitsOutput, options.TokenInput);
        var b = new NextTokenLogits(candidate, options.LogitsOutput ?? a.Output, options.TokenInput);
        var margins = new List<double>();
        var flipped = new List<bool>();
        long nonFinite = 0;
        foreach (var window in windows)
        {
            if (window.Length <= dropped) continue;
            var (p, vocab) = a.Run([window]);
            var (q, vocabB) = b.Run([window[dropped..]]);
            if (vocab != vocabB) throw new MitigationInputException($"the models' logits differ in width: {vocab} and {vocabB}");
            for (int t = dropped; t < window.Length; t++)
            {
                var rowP = p.AsSpan(t * vocab, vocab);
                var rowQ = q.AsSpan((t - dropped) * vocab, vocab);
                var (top, margin) = TopAndMargin(rowP);
                bool finite = AllFinite(rowQ);
                if (!finite) nonFinite++;
                margins.Add(margin);
                flipped.Add(!finite || ArgMax(rowQ) != top);
            }
        }
        double threshold = options.NearTies.Margin ?? Quantile(margins, options.NearTies.LowestFraction);
        long near = 0, nearFlips = 0;
        for (int i = 0; i < margins.Count; i++)
        {
            if (margins[i] > threshold) continue;
            near++;
            if (flipped[i]) nearFlips++;
        }
        return new FlipRateReport(margins.Count, flipped.LongCount(f => f), near, nearFlips, threshold, options.NearTies.ToString(), nonFinite,
            Quantile(margins, 0.5));
    }

    /// <summary>The value at quantile <paramref name="q"/> (the ceil(q n)-th smallest).</summary>
    private static double Quantile(List<double> values, double q)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        int index = Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1);
        return sorted[index];
    }

    private static (int Top, double Margin) TopAndMargin(ReadOnlySpan<float> row)
    {
        int top = ArgMax(row);
        double second = double.NegativeInfinity;
        for (int i = 0; i < row.Length; i++) if (i != top && row[i] > second) second = row[i];
        return (top, (double)row[top] - second);
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int arg = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[arg]) arg = i;
        return arg;
    }

    private static bool AllFinite(ReadOnlySpan<float> row)
    {
        foreach (float v in row) if (!float.IsFinite(v)) return false;
        return true;
    }
}
