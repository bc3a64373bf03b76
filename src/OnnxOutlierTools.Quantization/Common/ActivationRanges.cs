using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Quantization.Common;

/// <summary>The range of one activation tensor on the calibration text, from the probe statistics: max |x| over every token and
/// channel, or the P-th percentile of the per-token max |x| (the point's LogHistogram, 64 bins per octave: about 1% resolution),
/// which ignores the rare tokens (BOS with its massive activation) that set the max.</summary>
public static class ActivationRanges
{
    /// <summary>The probe point whose tensor is <paramref name="tensorName"/> (its first role or one it is also), or null.</summary>
    public static PointStatistics? PointOf(CalibrationStatistics statistics, string tensorName)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        foreach (var point in statistics.Manifest.Points)
            if (point.Tensor == tensorName && statistics[point.Id] is { } found && found.Tokens > 0) return found;
        return null;
    }

    /// <summary>max |x| over the whole tensor.</summary>
    public static double AbsMax(PointStatistics point)
    {
        double max = 0;
        for (int c = 0; c < point.Channels; c++)
        {
            double m = point.ChannelAbsMax(c);
            if (double.IsFinite(m) && m > max) max = m;
        }
        return max;
    }

    /// <summary>The clipping range: <see cref="AbsMax"/> when <paramref name="percentile"/> is null, else the percentile of the
    /// per-token max |x| (never above the max).</summary>
    public static double Range(PointStatistics point, double? percentile)
    {
        double max = AbsMax(point);
        if (percentile is not double p || p >= 100) return max;
        if (!(p > 0)) throw new ArgumentOutOfRangeException(nameof(percentile), percentile, "a percentile in (0, 100]");
        double q = point.TokenMaxAbs.Quantile(p / 100);
        return double.IsFinite(q) && q > 0 ? Math.Min(q, max) : max;
    }
}
