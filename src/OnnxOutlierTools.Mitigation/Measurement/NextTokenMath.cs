namespace OnnxOutlierTools.Mitigation.Measurement;

/// <summary>The float64 arithmetic of next-token comparisons, shared by <see cref="OutputDivergence"/> and the evaluation:
/// log-softmax of one row of logits, KL divergence of two log-distributions, the finiteness check.</summary>
public static class NextTokenMath
{
    public static bool AllFinite(ReadOnlySpan<float> x)
    {
        foreach (float v in x) if (!float.IsFinite(v)) return false;
        return true;
    }

    /// <summary>log softmax of <paramref name="x"/> in float64 into <paramref name="result"/>; returns the argmax (first on ties).</summary>
    public static int LogSoftmax(ReadOnlySpan<float> x, Span<double> result)
    {
        if (result.Length != x.Length) throw new ArgumentException("the result has another length than the logits", nameof(result));
        int arg = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[arg]) arg = i;
        double max = x[arg], sum = 0;
        for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - max);
        double log = max + Math.Log(sum);
        for (int i = 0; i < x.Length; i++) result[i] = x[i] - log;
        return arg;
    }

    /// <summary>KL(p || q) in nats from log-probabilities; never negative (float64 rounding can leave -1e-17 for identical
    /// distributions).</summary>
    public static double Kl(ReadOnlySpan<double> logP, ReadOnlySpan<double> logQ)
    {
        double kl = 0;
        for (int i = 0; i < logP.Length; i++)
        {
            double pi = Math.Exp(logP[i]);
            if (pi > 0) kl += pi * (logP[i] - logQ[i]);
        }
        return Math.Max(0, kl);
    }
}
