using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>What SmoothQuant reads of a calibration: per probe point (by any id the manifest gives it, e.g.
/// <c>block3.attention-input</c>), max |x| per channel. A few KB per point where the full <see cref="PointStatistics"/>
/// (moments, histograms, kept tokens) are about 0.35 MB at FFN width, so a rewrite of a deep model holds only this.</summary>
public sealed class ActivationRanges
{
    private readonly Dictionary<string, double[]> _absMax = new(StringComparer.Ordinal);

    /// <summary>Per-channel max |x| at <paramref name="probePoint"/>, or null when the calibration saw no token there.</summary>
    public double[]? this[string probePoint] => _absMax.GetValueOrDefault(probePoint);

    public int Count => _absMax.Count;

    /// <summary>Sets the range of <paramref name="probePoint"/> (the array is kept, not copied).</summary>
    public void Set(string probePoint, double[] channelAbsMax)
    {
        ArgumentNullException.ThrowIfNull(channelAbsMax);
        _absMax[probePoint] = channelAbsMax;
    }

    /// <summary>The ranges of every activation point that saw tokens, under its id and every id it is also known as.</summary>
    public static ActivationRanges From(CalibrationStatistics statistics)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        var ranges = new ActivationRanges();
        foreach (var point in statistics.Manifest.Points)
        {
            var stats = statistics[point.Id];
            if (stats is null || stats.Tokens == 0 || stats.Channels == 0) continue;
            var absMax = new double[stats.Channels];
            for (int c = 0; c < absMax.Length; c++) absMax[c] = stats.ChannelAbsMax(c);
            ranges.Set(point.Id, absMax);
            foreach (var alias in point.AlsoAs) ranges._absMax.TryAdd(alias.Id, absMax);
        }
        return ranges;
    }
}
