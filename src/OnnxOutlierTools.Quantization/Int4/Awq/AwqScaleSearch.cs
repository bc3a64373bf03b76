using System.Diagnostics;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Quantization.Int4.Awq;

/// <summary>The AWQ grid and the bounds on its cost.</summary>
public sealed record AwqSettings
{
    /// <summary>0.00, 0.05, ..., 1.00 (0 is s = 1: plain round-to-nearest, so the search never does worse than RTN).</summary>
    public static IReadOnlyList<double> DefaultAlphas { get; } = Enumerable.Range(0, 21).Select(i => i / 20.0).ToArray();

    public IReadOnlyList<double> Alphas { get; init; } = DefaultAlphas;
    /// <summary>Rows of X the error is measured on (an <see cref="EvenSample"/> of the captured rows).</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Output channels measured per linear (an <see cref="EvenSample"/>): int4 is per output channel, so each sampled
    /// channel's error is exact.</summary>
    public int MaxOutputChannels { get; init; } = 128;
    public int Seed { get; init; }
}

/// <summary>The error of one alpha: sum over the site's linears of <c>||(X / s) Q(diag(s) W) - X W||^2 / ||X W||^2</c>.</summary>
public sealed record AwqAlphaError(double Alpha, double Error);

/// <summary>What the search chose for one site.</summary>
public sealed record AwqSiteResult
{
    public required string Site { get; init; }
    public required double Alpha { get; init; }
    public required double Error { get; init; }
    /// <summary>The same error at s = 1: int4 round-to-nearest without AWQ.</summary>
    public required double RtnError { get; init; }
    public required IReadOnlyList<AwqAlphaError> Errors { get; init; }
    /// <summary>The scale per group (per channel unless tied), what the fold multiplies the consumers' input rows by.</summary>
    public required IReadOnlyList<double> Scales { get; init; }
    public required int Tokens { get; init; }
    public required TimeSpan Elapsed { get; init; }
}

/// <summary>AWQ (Lin et al. 2023, arXiv 2306.00978) for one folding site: per input channel j, s_j = mean|x_j|^alpha (mean over
/// the captured rows, clamped to 1e-4, tie groups averaged), normalized by sqrt(max s * min s) as the reference code does; for
/// each alpha of the grid the int4 round-to-nearest error of the site's linears on the captured activations
/// (<see cref="Int4BlockCodec"/>: the settings' block size and symmetry, scales rounded to the weight's type) is measured with
/// X / s against Q(diag(s) W), and the alpha of the smallest error wins (a tie goes to the smaller alpha, so alpha 0, s = 1,
/// wins unless AWQ does strictly better). Weights are read a sampled output channel at a time, never whole.</summary>
public static class AwqScaleSearch
{
    /// <param name="groups">Channel c takes the scale of group groups[c] (grouped KV heads at v-o); null: one per channel.</param>
    public static AwqSiteResult Search(string site, CapturedActivation activation, IReadOnlyList<SiteLinear> linears, int blockSize, bool symmetric,
        AwqSettings? settings = null, IReadOnlyList<int>? groups = null)
    {
        ArgumentNullException.ThrowIfNull(activation);
        ArgumentNullException.ThrowIfNull(linears);
        settings ??= new AwqSettings();
        var clock = Stopwatch.StartNew();
        int channels = activation.Channels;
        if (linears.Count == 0) throw new ArgumentException($"{site}: no linear reads the activation", nameof(linears));
        if (activation.RowCount == 0) throw new ArgumentException($"{site}: no captured rows", nameof(activation));
        var alphas = settings.Alphas.Distinct().Order().ToArray();
        if (alphas.Length == 0 || alphas.Any(a => !(a is >= 0 and <= 1))) throw new ArgumentOutOfRangeException(nameof(settings), "alphas must be in [0, 1]");
        if (groups is not null && groups.Count != channels) throw new ArgumentException($"{site}: {groups.Count} group entries for {channels} channels", nameof(groups));
        int groupCount = groups is null ? channels : groups.Max() + 1;

        var rows = EvenSample.Indices(activation.RowCount, settings.MaxTokens, settings.Seed);
        int n = rows.Length;
        var x = new float[(long)n * channels];
        for (int i = 0; i < n; i++) activation.Row(rows[i]).CopyTo(x.AsSpan(i * channels, channels));
        foreach (float v in x) if (!float.IsFinite(v)) throw new Int4QuantizationException($"{site}: the captured activation is not finite ({v})");

        // mean |x| per group (over the sampled rows).
        var mean = new double[groupCount];
        var members = new int[groupCount];
        for (int j = 0; j < channels; j++) members[groups?[j] ?? j]++;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < channels; j++) mean[groups?[j] ?? j] += Math.Abs(x[(long)i * channels + j]);
        for (int g = 0; g < groupCount; g++) mean[g] = Math.Max(1e-4, mean[g] / Math.Max(1, (long)n * members[g]));

        var samples = linears.Select(l => Sample(l, channels, settings, site)).ToArray();
        var references = samples.Select(w => Products(x, n, channels, w.Values, w.Count)).ToArray();
        var norms = references.Select(r => Math.Max(r.Sum(v => (double)v * v), double.Epsilon)).ToArray();

        var errors = new List<AwqAlphaError>();
        double[]? best = null;
        double bestError = double.PositiveInfinity;
        foreach (double alpha in alphas)
        {
            var s = Scale(mean, alpha);
            double error = Evaluate(s, groups, x, n, channels, samples, references, norms, blockSize, symmetric);
            errors.Add(new AwqAlphaError(alpha, error));
            if (error < bestError || best is null) (best, bestError) = (s, error);
        }
        double rtn = alphas[0] == 0 ? errors[0].Error
            : Evaluate(Enumerable.Repeat(1.0, groupCount).ToArray(), groups, x, n, channels, samples, references, norms, blockSize, symmetric);
        return new AwqSiteResult
        {
            Site = site, Alpha = errors.First(e => e.Error == bestError).Alpha, Error = bestError, RtnError = rtn, Errors = errors,
            Scales = best!, Tokens = n, Elapsed = clock.Elapsed,
        };
    }

    /// <summary>mean^alpha normalized by sqrt(max * min): alpha 0 gives exactly 1.</summary>
    public static double[] Scale(IReadOnlyList<double> mean, double alpha)
    {
        var s = mean.Select(m => Math.Pow(m, alpha)).ToArray();
        if (alpha == 0) return s;
        double norm = Math.Sqrt(s.Max() * s.Min());
        for (int i = 0; i < s.Length; i++) s[i] /= norm;
        return s;
    }

    private static double Evaluate(double[] groupScale, IReadOnlyList<int>? groups, float[] x, int n, int channels, WeightRows[] samples,
        float[][] references, double[] norms, int blockSize, bool symmetric)
    {
        var s = new float[channels];
        for (int j = 0; j < channels; j++) s[j] = (float)groupScale[groups?[j] ?? j];
        var xs = new float[x.Length];
        for (int i = 0; i < n; i++) TensorPrimitives.Divide(x.AsSpan(i * channels, channels), s, xs.AsSpan(i * channels, channels));
        double total = 0;
        for (int l = 0; l < samples.Length; l++)
        {
            var w = samples[l];
            var q = new float[w.Values.Length];
            int blocks = (channels + blockSize - 1) / blockSize;
            Parallel.For(0, w.Count, c =>
            {
                var scaled = new float[channels];
                // The fold multiplies the stored weight by s in fp32 and rounds once to its type (ScaledTensor).
                TensorPrimitives.Multiply(w.Values.AsSpan(c * channels, channels), s, scaled);
                RoundTo(scaled, w.Type);
                var codes = new byte[channels];
                var scales = new float[blocks];
                var zeros = new byte[blocks];
                Int4BlockCodec.Quantize(scaled, blockSize, symmetric, w.ScaleType, codes, scales, zeros);
                var target = q.AsSpan(c * channels, channels);
                for (int j = 0; j < channels; j++) target[j] = (codes[j] - zeros[j / blockSize]) * scales[j / blockSize];
            });
            var y = Products(xs, n, channels, q, w.Count);
            double error = 0;
            var reference = references[l];
            for (int i = 0; i < y.Length; i++)
            {
                double d = (double)y[i] - reference[i];
                error += d * d;
            }
            total += error / norms[l];
        }
        return total;
    }

    private static void RoundTo(Span<float> values, TensorDataType type)
    {
        if (type == TensorDataType.Float16) for (int i = 0; i < values.Length; i++) values[i] = (float)(Half)values[i];
        else if (type == TensorDataType.BFloat16) for (int i = 0; i < values.Length; i++) values[i] = (float)(BFloat16)values[i];
    }

    /// <summary>[n, m] = X [n, in] times the m weight rows (each [in]).</summary>
    private static float[] Products(float[] x, int n, int channels, float[] rows, int m)
    {
        var y = new float[(long)n * m];
        Parallel.For(0, n, i =>
        {
            var row = x.AsSpan(i * channels, channels);
            for (int c = 0; c < m; c++) y[(long)i * m + c] = TensorPrimitives.Dot(row, rows.AsSpan(c * channels, channels));
        });
        return y;
    }

    private sealed record WeightRows(float[] Values, int Count, TensorDataType Type, TensorDataType ScaleType);

    /// <summary>Sampled output channels of a linear as rows over the input channels, whatever the stored layout.</summary>
    private static WeightRows Sample(SiteLinear linear, int channels, AwqSettings settings, string site)
    {
        var w = linear.Weight;
        if (w.Dims.Count != 2 || !WeightReader.Supports(w.DataType))
            throw new Int4QuantizationException($"{site}: linear '{linear.Name}' has a {w.DataType.OnnxName()}[{string.Join(",", w.Dims)}] weight; a 2-D float one was expected");
        bool inOut = linear.Layout == WeightLayout.InOut;
        long inFeatures = inOut ? w.Dims[0] : w.Dims[1], outFeatures = inOut ? w.Dims[1] : w.Dims[0];
        if (inFeatures != channels) throw new Int4QuantizationException($"{site}: linear '{linear.Name}' reads {inFeatures} channels, the activation has {channels}");
        var picked = EvenSample.Indices(outFeatures, settings.MaxOutputChannels, settings.Seed);
        var values = new float[(long)picked.Length * channels];
        if (!inOut)
            for (int c = 0; c < picked.Length; c++) WeightReader.Read(w, (long)picked[c] * channels, values.AsSpan(c * channels, channels));
        else
        {
            var row = new float[outFeatures];
            for (int j = 0; j < channels; j++)
            {
                WeightReader.Read(w, (long)j * outFeatures, row);
                for (int c = 0; c < picked.Length; c++) values[(long)c * channels + j] = row[picked[c]];
            }
        }
        var scaleType = w.DataType == TensorDataType.Float16 ? TensorDataType.Float16 : TensorDataType.Float;
        return new WeightRows(values, picked.Length, w.DataType, scaleType);
    }
}
