using System.Diagnostics;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>How the activations of the linears would be quantized (SCIENCE.md 3).</summary>
public enum ActivationScheme
{
    /// <summary>One scale per token from its own max (what SmoothQuant's LLaMA numbers use).</summary>
    PerTokenDynamic,
    /// <summary>One calibrated scale for the whole tensor: max|x| over every calibration token / 127 (the case outliers break).</summary>
    PerTensorStatic,
}

/// <summary>One linear that reads the site's activation X: its weight (any size, read in chunks; FLOAT, FLOAT16 or BFLOAT16)
/// and layout.</summary>
public sealed record SiteLinear(string Name, Tensor Weight, WeightLayout Layout);

/// <summary>The alpha grid and the bounds on the search's cost.</summary>
public sealed record SmoothAlphaSearchOptions
{
    /// <summary>0.00, 0.05, ..., 1.00.</summary>
    public static IReadOnlyList<double> DefaultAlphas { get; } = Enumerable.Range(0, 21).Select(i => i / 20.0).ToArray();

    public IReadOnlyList<double> Alphas { get; init; } = DefaultAlphas;
    public ActivationScheme Scheme { get; init; } = ActivationScheme.PerTokenDynamic;
    /// <summary>Rows of X used (an <see cref="EvenSample"/> of the captured rows).</summary>
    public int MaxTokens { get; init; } = 512;
    /// <summary>Output channels used per linear (an <see cref="EvenSample"/>). Per-output-channel weight quantization makes each
    /// sampled column's error exact: a column's quantization depends on that column alone.</summary>
    public int MaxOutputChannels { get; init; } = 128;
    public int Seed { get; init; }
    /// <summary>Channels that must share a scale (grouped-query v -> o); null: none.</summary>
    public ChannelTies? Ties { get; init; }
}

/// <summary>The relative output error at one alpha: the sum over the site's linears of
/// <c>||Q(X/s) Q(diag(s) W) - X W||^2 / ||X W||^2</c>, and each linear's term.</summary>
public sealed record AlphaError(double Alpha, double Error, IReadOnlyList<double> PerLinear);

/// <summary>What the search measured and chose.</summary>
public sealed record SmoothAlphaResult
{
    /// <summary>Every alpha of the grid with its error, in ascending alpha.</summary>
    public required IReadOnlyList<AlphaError> Errors { get; init; }
    public required double Alpha { get; init; }
    public required double Error { get; init; }
    /// <summary>The same error without smoothing (s = 1), for comparison.</summary>
    public required double UnsmoothedError { get; init; }
    /// <summary>The scale at the chosen alpha (ties applied), what the fold multiplies W's input rows by.</summary>
    public required IReadOnlyList<double> Scales { get; init; }
    public required ActivationScheme Scheme { get; init; }
    /// <summary>Rows of X the errors were measured on, out of <see cref="TokensCaptured"/>.</summary>
    public required int Tokens { get; init; }
    public required int TokensCaptured { get; init; }
    /// <summary>Output channels measured per linear.</summary>
    public required IReadOnlyList<int> OutputChannels { get; init; }
    /// <summary>Multiply-adds of the error products (tokens x input channels x sampled output channels, per alpha and linear).</summary>
    public required long MultiplyAdds { get; init; }
    public required TimeSpan Elapsed { get; init; }
}

/// <summary>SmoothQuant's <c>auto</c> alpha for one site (SCIENCE.md 2.2): for each alpha of the grid, s = SmoothQuantScale over
/// the exact per-channel max |X_j| of the calibration tokens and the joint max |W_j| of every linear reading X (tie groups reduced
/// by max), then the int8 fake-quantization error (<see cref="FakeQuant"/>: activations per token or per tensor, weights per output
/// channel) of the linears' outputs on captured activations; the alpha of the smallest error wins (a tie goes to the smaller
/// alpha). The cost is bounded by <see cref="SmoothAlphaSearchOptions.MaxTokens"/> x in x
/// <see cref="SmoothAlphaSearchOptions.MaxOutputChannels"/> multiply-adds per alpha and linear (vectorized dot products), and the
/// weights are read chunk by chunk, never whole. The per-tensor static scale is exact too: max|X/s| = max_j (max|X_j| / s_j).
/// Only the linears that read X are measured: at the v -> o and up -> down sites the producer's output columns are divided by s,
/// and a per-output-channel weight quantization is invariant to a column's scale, so the producer's own error does not move.
/// Prints nothing.</summary>
public static class SmoothAlphaSearch
{
    public static SmoothAlphaResult Search(CapturedActivation activation, IReadOnlyList<SiteLinear> linears, SmoothAlphaSearchOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(activation);
        ArgumentNullException.ThrowIfNull(linears);
        options ??= new SmoothAlphaSearchOptions();
        var clock = Stopwatch.StartNew();
        int channels = activation.Channels;
        var alphas = CheckAlphas(options.Alphas);
        if (linears.Count == 0) throw new ArgumentException($"{activation.Name}: a smoothing site needs at least one linear", nameof(linears));
        if (options.Ties is { } ties && ties.Channels != channels)
            throw new ArgumentException($"{activation.Name}: tie groups cover {ties.Channels} channels, the activation has {channels}", nameof(options));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxTokens);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxOutputChannels);
        if (activation.RowCount == 0) throw new ArgumentException($"{activation.Name}: no captured rows to measure the error on", nameof(activation));
        foreach (double m in activation.ChannelAbsMax)
            if (!double.IsFinite(m)) throw new ArgumentException($"{activation.Name}: the captured activation is not finite (max |x| {m}); no scale can be chosen from it", nameof(activation));

        var activationMax = (double[])activation.ChannelAbsMax.Clone();
        var weightMax = new double[channels];
        var samples = new List<WeightSample>(linears.Count);
        foreach (var linear in linears)
        {
            CheckLinear(linear, channels, activation.Name);
            var sample = WeightSample.Read(linear, options.MaxOutputChannels, options.Seed);
            for (int j = 0; j < channels; j++) weightMax[j] = Math.Max(weightMax[j], sample.InputAbsMax[j]);
            samples.Add(sample);
        }
        options.Ties?.ReduceMax(activationMax);
        options.Ties?.ReduceMax(weightMax);

        var rows = EvenSample.Indices(activation.RowCount, options.MaxTokens, options.Seed);
        int n = rows.Length;
        var x = new float[n * channels];
        for (int i = 0; i < n; i++) activation.Row(rows[i]).CopyTo(x.AsSpan(i * channels, channels));
        var references = samples.Select(w => Reference.Of(x, n, w)).ToArray();

        var work = new Workspace(n, channels, samples.Max(s => s.Count));
        double unsmoothed = Evaluate(Enumerable.Repeat(1.0, channels).ToArray(), activationMax, x, n, samples, references, options.Scheme, work).Sum();
        var errors = new List<AlphaError>(alphas.Length);
        foreach (double alpha in alphas)
        {
            var s = SmoothQuantScale.Compute(activationMax, weightMax, alpha);
            var perLinear = Evaluate(s, activationMax, x, n, samples, references, options.Scheme, work);
            errors.Add(new AlphaError(alpha, perLinear.Sum(), perLinear));
        }
        var best = errors[0];
        foreach (var e in errors.Skip(1))
            if (e.Error < best.Error || double.IsNaN(best.Error) && !double.IsNaN(e.Error)) best = e;
        long multiplyAdds = (long)n * channels * samples.Sum(s => (long)s.Count) * (alphas.Length + 1);
        return new SmoothAlphaResult
        {
            Errors = errors,
            Alpha = best.Alpha,
            Error = best.Error,
            UnsmoothedError = unsmoothed,
            Scales = SmoothQuantScale.Compute(activationMax, weightMax, best.Alpha),
            Scheme = options.Scheme,
            Tokens = n,
            TokensCaptured = activation.RowCount,
            OutputChannels = samples.Select(s => s.Count).ToArray(),
            MultiplyAdds = multiplyAdds,
            Elapsed = clock.Elapsed,
        };
    }

    private static double[] CheckAlphas(IReadOnlyList<double> alphas)
    {
        ArgumentNullException.ThrowIfNull(alphas);
        if (alphas.Count == 0) throw new ArgumentException("the alpha grid is empty", nameof(alphas));
        foreach (double a in alphas)
            if (!(a is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(alphas), a, "alpha must be in [0, 1]");
        return alphas.Distinct().Order().ToArray();
    }

    private static void CheckLinear(SiteLinear linear, int channels, string site)
    {
        ArgumentNullException.ThrowIfNull(linear);
        var w = linear.Weight;
        if (w.DataType is not (TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16))
            throw new NotSupportedException($"{site}: linear '{linear.Name}' has a {w.DataType.OnnxName()} weight; only FLOAT, FLOAT16 and BFLOAT16 weights can be smoothed");
        if (w.Dims.Count != 2 || w.ElementCount == 0)
            throw new ArgumentException($"{site}: linear '{linear.Name}' has a weight of shape [{string.Join(",", w.Dims)}], a non-empty 2-D one was expected");
        long inFeatures = linear.Layout == WeightLayout.InOut ? w.Dims[0] : w.Dims[1];
        if (inFeatures != channels)
            throw new ArgumentException($"{site}: linear '{linear.Name}' reads {inFeatures} input channels, the activation has {channels}");
    }

    /// <summary>Each linear's relative error for the scale <paramref name="s"/>.</summary>
    private static double[] Evaluate(double[] s, double[] activationMax, float[] x, int n, List<WeightSample> weights, Reference[] references,
        ActivationScheme scheme, Workspace work)
    {
        int channels = s.Length;
        for (int j = 0; j < channels; j++) work.Scale[j] = (float)s[j];
        // Q(X / s)
        for (int i = 0; i < n; i++) TensorPrimitives.Divide(x.AsSpan(i * channels, channels), work.Scale, work.X.AsSpan(i * channels, channels));
        if (scheme == ActivationScheme.PerTokenDynamic) FakeQuant.PerRow(work.X, channels, work.X);
        else
        {
            double max = 0;
            for (int j = 0; j < channels; j++) max = Math.Max(max, activationMax[j] / work.Scale[j]);
            FakeQuant.Apply(work.X, (float)(max / FakeQuant.Int8Max), work.X);
        }
        var errors = new double[weights.Count];
        for (int l = 0; l < weights.Count; l++)
        {
            var w = weights[l];
            int m = w.Count;
            // Q(diag(s) W): the sampled output channels are rows of w.Values, each quantized by its own max.
            var q = work.W.AsSpan(0, m * channels);
            for (int c = 0; c < m; c++) TensorPrimitives.Multiply(w.Values.AsSpan(c * channels, channels), work.Scale, q.Slice(c * channels, channels));
            FakeQuant.PerRow(q, channels, q);
            errors[l] = SquaredError(work.X, work.W, n, m, channels, references[l].Y) / Math.Max(references[l].SquaredNorm, double.Epsilon);
        }
        return errors;
    }

    /// <summary>sum (xq_i . wq_c - reference_ic)^2 in tiles of rows x output channels small enough to stay in cache (the dot
    /// products stream rows of the input width; without tiles every row would re-read all the sampled weights from memory).</summary>
    private static double SquaredError(float[] xq, float[] wq, int n, int m, int channels, float[] reference)
    {
        int tile = Math.Max(1, Math.Min(32, (256 << 10) / (4 * channels)));
        int rowTiles = (n + tile - 1) / tile;
        // One partial sum per tile, added in order afterwards: the result does not depend on how threads were scheduled.
        var partial = new double[rowTiles];
        Parallel.For(0, rowTiles, t =>
        {
            double sum = 0;
            int i0 = t * tile, i1 = Math.Min(n, i0 + tile);
            for (int c0 = 0; c0 < m; c0 += tile)
            {
                int c1 = Math.Min(m, c0 + tile);
                for (int i = i0; i < i1; i++)
                {
                    var row = xq.AsSpan(i * channels, channels);
                    for (int c = c0; c < c1; c++)
                    {
                        double d = TensorPrimitives.Dot(row, wq.AsSpan(c * channels, channels)) - (double)reference[i * m + c];
                        sum += d * d;
                    }
                }
            }
            partial[t] = sum;
        });
        return partial.Sum();
    }

    private sealed class Workspace(int n, int channels, int maxColumns)
    {
        public float[] Scale { get; } = new float[channels];
        public float[] X { get; } = new float[n * channels];
        public float[] W { get; } = new float[maxColumns * channels];
    }

    /// <summary>X W on the sampled rows and output channels, unquantized: [n, m] and its squared norm.</summary>
    private sealed record Reference(float[] Y, double SquaredNorm)
    {
        public static Reference Of(float[] x, int n, WeightSample w)
        {
            int channels = w.InFeatures, m = w.Count;
            var y = new float[n * m];
            Parallel.For(0, n, i =>
            {
                var row = x.AsSpan(i * channels, channels);
                for (int c = 0; c < m; c++) y[i * m + c] = TensorPrimitives.Dot(row, w.Values.AsSpan(c * channels, channels));
            });
            double norm = 0;
            foreach (float v in y) norm += (double)v * v;
            return new Reference(y, norm);
        }
    }
}

/// <summary>Sampled output channels of a linear's weight as fp32 rows [count, in] (each row one output channel's weights over
/// the input channels, whatever the stored layout), and max |W_j| per input channel over every output channel (as
/// <see cref="SmoothQuantScale.InputChannelAbsMax"/> computes it: NaN ignored), in one vectorized pass over the weight, read in
/// chunks of whole rows.</summary>
internal sealed class WeightSample
{
    private const int ChunkElements = 1 << 20;

    private WeightSample(int inFeatures, int[] columns, float[] values, double[] inputAbsMax)
    {
        InFeatures = inFeatures;
        Columns = columns;
        Values = values;
        InputAbsMax = inputAbsMax;
    }

    public int InFeatures { get; }
    /// <summary>The output channels sampled, ascending.</summary>
    public int[] Columns { get; }
    public int Count => Columns.Length;
    public float[] Values { get; }
    public double[] InputAbsMax { get; }

    public static WeightSample Read(SiteLinear linear, int maxColumns, int seed)
    {
        var w = linear.Weight;
        bool inOut = linear.Layout == WeightLayout.InOut;
        long rows = w.Dims[0], width = w.Dims[1];
        int inFeatures = checked((int)(inOut ? rows : width));
        var columns = EvenSample.Indices(inOut ? width : rows, maxColumns, seed);
        var values = new float[(long)columns.Length * inFeatures];
        var max = new float[inFeatures];
        var magnitude = new float[inOut ? 0 : inFeatures];
        int rowsPerChunk = (int)Math.Clamp(ChunkElements / Math.Max(1, width), 1, Math.Max(1, rows));
        var chunk = new float[checked((int)(rowsPerChunk * width))];
        int next = 0; // the next sampled output channel (OutIn: a row)
        for (long r0 = 0; r0 < rows; r0 += rowsPerChunk)
        {
            int count = (int)Math.Min(rowsPerChunk, rows - r0);
            var span = chunk.AsSpan(0, checked((int)(count * width)));
            SmoothQuantScale.ReadSingles(w, r0 * width, span);
            for (int r = 0; r < count; r++)
            {
                var row = span.Slice(checked((int)(r * width)), (int)width);
                long index = r0 + r;
                if (inOut)
                {
                    // Row = input channel: its max, and the sampled output channels' entries.
                    float m = Math.Abs(TensorPrimitives.MaxMagnitude(row));
                    max[index] = float.IsNaN(m) ? AbsMaxIgnoringNaN(row) : m;
                    for (int c = 0; c < columns.Length; c++) values[(long)c * inFeatures + index] = row[columns[c]];
                }
                else
                {
                    // Row = output channel: fold into every input channel's max, keep it when sampled.
                    TensorPrimitives.Abs(row, magnitude);
                    TensorPrimitives.MaxNumber(max, magnitude, max);
                    if (next < columns.Length && columns[next] == index) row.CopyTo(values.AsSpan(next++ * inFeatures, inFeatures));
                }
            }
        }
        return new WeightSample(inFeatures, columns, values, Array.ConvertAll(max, v => (double)v));
    }

    /// <summary>The rare row holding a NaN: its max over the other values.</summary>
    private static float AbsMaxIgnoringNaN(ReadOnlySpan<float> row)
    {
        float max = 0;
        foreach (float v in row)
            if (Math.Abs(v) > max) max = Math.Abs(v);
        return max;
    }
}
