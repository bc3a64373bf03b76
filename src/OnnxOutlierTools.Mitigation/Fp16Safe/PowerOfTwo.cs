namespace OnnxOutlierTools.Mitigation.Fp16Safe;

/// <summary>Power-of-two rescaling: multiplying a binary floating-point number by 2^k changes only its exponent, so it is
/// exact (no rounding) in fp32, fp16 and bf16 unless the result leaves the normal range (overflow, or a subnormal that
/// drops mantissa bits). That is why the fp16-safe folds use nothing else.</summary>
public static class PowerOfTwo
{
    /// <summary>The smallest k &gt;= 0 with <paramref name="maxAbs"/> * 2^-k below <paramref name="limit"/>.</summary>
    public static int ExponentToFit(double maxAbs, double limit)
    {
        if (!double.IsFinite(maxAbs) || maxAbs < 0) throw new ArgumentOutOfRangeException(nameof(maxAbs), maxAbs, "a finite, non-negative maximum is needed");
        if (!(limit > 0) || !double.IsFinite(limit)) throw new ArgumentOutOfRangeException(nameof(limit), limit, "the limit must be finite and positive");
        int k = 0;
        while (maxAbs * Math.ScaleB(1, -k) >= limit) k++;
        return k;
    }

    /// <summary>2^<paramref name="k"/> as a double (exact).</summary>
    public static double Factor(int k) => Math.ScaleB(1, k);

    /// <summary>Whether <paramref name="s"/> is +2^k for an integer k.</summary>
    public static bool Is(double s) => s > 0 && double.IsFinite(s) && Math.ScaleB(s, -Math.ILogB(s)) == 1;
}
