namespace OnnxOutlierTools.Probes;

/// <summary>A histogram of non-negative magnitudes on a log scale (<see cref="BinsPerOctave"/> bins per factor of 2
/// from 2^<see cref="MinExponent"/> to 2^<see cref="MaxExponent"/>, plus a bin for zero and below, and one for above):
/// quantiles of a stream in bounded memory, with a relative error under 2^(1/64) - 1 = 1.1% inside the range.</summary>
public sealed class LogHistogram
{
    public const int BinsPerOctave = 64;
    public const int MinExponent = -40;
    public const int MaxExponent = 40;
    private const int RangeBins = (MaxExponent - MinExponent) * BinsPerOctave;

    // [0]: zero and below 2^MinExponent; [1..RangeBins]: the log bins; [RangeBins + 1]: above (and infinities, NaN).
    private readonly long[] _counts = new long[RangeBins + 2];

    public long Count { get; private set; }

    public void Add(double magnitude)
    {
        _counts[BinOf(magnitude)]++;
        Count++;
    }

    public void Merge(LogHistogram other)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        Count += other.Count;
    }

    /// <summary>The value at quantile <paramref name="q"/> in [0, 1] (the geometric centre of its bin); 0 for an empty histogram.</summary>
    public double Quantile(double q)
    {
        if (Count == 0) return 0;
        long rank = Math.Clamp((long)Math.Ceiling(q * Count), 1, Count);
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank) return CentreOf(i);
        }
        return CentreOf(_counts.Length - 1);
    }

    public double Median => Quantile(0.5);

    /// <summary>Non-empty bins as (lower edge, count), for plots and the stats file.</summary>
    public IEnumerable<(double Lower, long Count)> Bins()
    {
        for (int i = 0; i < _counts.Length; i++)
            if (_counts[i] > 0) yield return (LowerOf(i), _counts[i]);
    }

    /// <summary>Restores a histogram written by <see cref="Bins"/>.</summary>
    public static LogHistogram FromBins(IEnumerable<(double Lower, long Count)> bins)
    {
        var h = new LogHistogram();
        foreach (var (lower, count) in bins)
        {
            int bin = lower <= 0 ? 0 : BinOf(lower * Math.Pow(2, 0.5 / BinsPerOctave));
            h._counts[bin] += count;
            h.Count += count;
        }
        return h;
    }

    private static int BinOf(double magnitude)
    {
        if (double.IsNaN(magnitude) || magnitude >= Math.Pow(2, MaxExponent)) return RangeBins + 1;
        if (magnitude < Math.Pow(2, MinExponent)) return 0;
        int bin = (int)Math.Floor((Math.Log2(magnitude) - MinExponent) * BinsPerOctave);
        return 1 + Math.Clamp(bin, 0, RangeBins - 1);
    }

    private static double LowerOf(int bin) => bin switch
    {
        0 => 0,
        RangeBins + 1 => Math.Pow(2, MaxExponent),
        _ => Math.Pow(2, MinExponent + (bin - 1) / (double)BinsPerOctave),
    };

    private static double CentreOf(int bin) => bin switch
    {
        0 => 0,
        RangeBins + 1 => Math.Pow(2, MaxExponent),
        _ => Math.Pow(2, MinExponent + (bin - 0.5) / (double)BinsPerOctave),
    };
}
