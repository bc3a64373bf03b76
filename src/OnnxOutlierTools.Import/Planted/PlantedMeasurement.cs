namespace OnnxOutlierTools.Import.Planted;

/// <summary>Measures the planted outliers with the float64 <see cref="DecoderTrace"/> and assembles the
/// <see cref="PlantedGroundTruth"/> (everything but the flavour).</summary>
public static class PlantedMeasurement
{
    public const double SunAbsolute = 100, SunRelative = 1000;
    /// <summary>Windows measured for the activation statistics (the perplexity uses <see cref="PerplexityWindows"/>).</summary>
    public const int StatisticWindows = 4;
    public const int PerplexityWindows = 32;

    public static PlantedGroundTruth Measure(DecoderWeights original, DecoderWeights planted, PlantedOutlierPlan plan,
        IReadOnlyList<int[]> windows, string textName)
    {
        var c = planted.Config;
        var c0 = original.Config;
        var statWindows = windows.Take(StatisticWindows).ToArray();
        var traces = statWindows.Select(w => new DecoderTrace(planted).Run(w, TraceParts.All)).ToArray();
        var first = traces[0];
        int h0 = c0.HiddenDim;
        var neurons = Enumerable.Range(h0, plan.MassiveChannels.Count).ToArray();

        var atBirth = neurons.Select(i =>
        {
            var y6 = first.DownInputs![plan.MassiveBlock][0];
            double median = MedianAbs(y6);
            return new BirthValue(i, R(y6[i]), R(median), R(Math.Abs(y6[i]) / median));
        }).ToArray();
        var carried = new List<ResidualValue>();
        for (int l = plan.MassiveBlock; l < c.Layers; l++)
        {
            var x = first.BlockOutputs![l][0];
            double median = MedianAbs(x);
            foreach (int ch in plan.MassiveChannels) carried.Add(new ResidualValue(l, ch, R(x[ch]), R(median), R(Math.Abs(x[ch]) / median)));
        }
        var superWeights = plan.MassiveChannels.Select((ch, k) =>
            new SuperWeight(plan.MassiveBlock, neurons[k], ch, R(planted.Layers[plan.MassiveBlock].W2[(long)ch * c.HiddenDim + neurons[k]]))).ToArray();

        var channelMax = new double[c.Dim];
        var above = new int[c.Dim];
        int tokens = 0;
        foreach (var trace in traces)
            foreach (var y in trace.FfnNormOutputs![plan.GainBlock])
            {
                tokens++;
                for (int j = 0; j < c.Dim; j++)
                {
                    channelMax[j] = Math.Max(channelMax[j], Math.Abs(y[j]));
                    if (Math.Abs(y[j]) > 6) above[j]++;
                }
            }
        double medianChannelMax = Median(channelMax.Take(c0.Dim).ToArray());
        var gains = plan.GainChannels.Select(ch => new GainChannel(ch,
            R(original.Layers[plan.GainBlock].FfnNorm[ch]), R(planted.Layers[plan.GainBlock].FfnNorm[ch]),
            R(channelMax[ch]), R(channelMax[ch] / medianChannelMax), R((double)above[ch] / tokens))).ToArray();
        double largestOther = Enumerable.Range(0, c.Dim).Where(j => !plan.GainChannels.Contains(j)).Max(j => channelMax[j]) / medianChannelMax;

        var (sinkMean, sinkMin) = SinkMass(traces, plan.SinkBlock, plan.SinkHead);
        double otherHeads = 0;
        for (int l = 0; l < c.Layers; l++)
            for (int h = 0; h < c.Heads; h++)
                if (l != plan.SinkBlock || h != plan.SinkHead) otherHeads = Math.Max(otherHeads, SinkMass(traces, l, h).Mean);

        var pplWindows = windows.Take(PerplexityWindows).ToArray();
        var (before, scored) = PlantedCorpus.Perplexity(original, pplWindows);
        var (after, _) = PlantedCorpus.Perplexity(planted, pplWindows);
        var (ablated, _) = PlantedCorpus.Perplexity(WithoutSuperWeights(planted, plan, neurons), pplWindows);

        return new PlantedGroundTruth
        {
            Source = "stories260K (karpathy/tinyllamas, llama2.c checkpoint stories260K.bin) widened and planted by OnnxOutlierTools.Import.Planted.OutlierPlanter",
            Flavour = "",
            Model = new ModelShape(c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.HeadSize, c.VocabSize, c.MaxSeqLen, c.RopeTheta, R(c.NormEps),
                c0.Dim, c0.HiddenDim, c0.Heads, c0.KvHeads),
            Channels = new PlantedChannels(plan.BiasChannel, plan.BiasValue, plan.FlagChannel, plan.FlagValue, plan.MassiveChannels,
                Enumerable.Range(c0.Dim, c.Dim - c0.Dim).Except([plan.BiasChannel, plan.FlagChannel, .. plan.MassiveChannels]).ToArray()),
            MassiveActivation = new MassiveActivationTruth
            {
                Block = plan.MassiveBlock,
                BirthPoint = "ffn.down.input",
                TokenPosition = 0,
                TokenId = Llama2cTokenizer.Bos,
                TokenText = "<s>",
                Trigger = $"FFN neurons {string.Join(", ", neurons)} of block {plan.MassiveBlock} read only channel {plan.FlagChannel}, which only the BOS embedding sets: every BOS token fires them (the windows here hold BOS at position 0 only)",
                Channels = plan.MassiveChannels,
                Neurons = neurons,
                AtBirth = atBirth,
                SuperWeights = superWeights,
                Carried = carried,
            },
            ChannelOutliers = new ChannelOutlierTruth
            {
                Block = plan.GainBlock,
                Norm = "ffn_norm",
                GainFactor = plan.GainFactor,
                Compensation = "gate and up weights of these input channels divided by the gain factor (function unchanged)",
                Channels = plan.GainChannels,
                MedianChannelMaxAbs = R(medianChannelMax),
                Measured = gains,
                LargestOtherRatio = R(largestOther),
            },
            AttentionSink = new AttentionSinkTruth
            {
                Block = plan.SinkBlock,
                Head = plan.SinkHead,
                KvHead = plan.SinkHead / c.QueriesPerKvHead,
                Position = 0,
                Dimension = plan.SinkDimension,
                QueryWeight = plan.SinkQueryWeight,
                Key = plan.SinkKey,
                ValueScale = plan.SinkValueScale,
                ValueSourceKvHead = plan.SinkValueSource,
                MeanMassOnPosition0 = R(sinkMean),
                MinMassOnPosition0 = R(sinkMin),
                LargestOtherHeadMass = R(otherHeads),
                Mechanism = $"a new head: in head dimension {plan.SinkDimension} the query reads bias channel {plan.BiasChannel} (weight {plan.SinkQueryWeight}) " +
                    $"and the key is {plan.SinkKey} on BOS only (read from massive channel {plan.MassiveChannels[0]}); its value is 0 on BOS and {plan.SinkValueScale} x KV head " +
                    $"{plan.SinkValueSource}'s elsewhere, written out by head {plan.SinkValueSource * c.QueriesPerKvHead}'s o_proj columns",
            },
            Perplexity = new PerplexityTruth
            {
                Text = textName,
                Protocol = PlantedCorpus.Protocol,
                WindowTokens = PlantedCorpus.WindowTokens,
                Windows = pplWindows.Length,
                ScoredTokens = scored,
                Before = R(before),
                After = R(after),
                RelativeChange = R(after / before - 1),
                SuperWeightsZeroed = R(ablated),
            },
            OnlyPlantedMassiveActivations = CheckThresholds(traces, plan, neurons),
        };
    }

    /// <summary>The planted weights with the super weights set to zero (the arrays of other layers are shared).</summary>
    public static DecoderWeights WithoutSuperWeights(DecoderWeights planted, PlantedOutlierPlan plan, IReadOnlyList<int> neurons)
    {
        var layers = planted.Layers.ToArray();
        var m = layers[plan.MassiveBlock];
        var w2 = (float[])m.W2.Clone();
        for (int k = 0; k < neurons.Count; k++) w2[(long)plan.MassiveChannels[k] * planted.Config.HiddenDim + neurons[k]] = 0;
        layers[plan.MassiveBlock] = new LayerWeights(m.AttentionNorm, m.Wq, m.Wk, m.Wv, m.Wo, m.FfnNorm, m.W1, w2, m.W3);
        return new DecoderWeights(planted.Config, planted.TokenEmbedding, layers, planted.FinalNorm, planted.Classifier);
    }

    private static ThresholdCheck CheckThresholds(WindowTrace[] traces, PlantedOutlierPlan plan, int[] neurons)
    {
        int planted = 0, missing = 0, other = 0, tokens = 0;
        double otherAbs = 0, otherRatio = 0;
        void Scan(double[] x, int layer, int position, bool down)
        {
            double median = MedianAbs(x);
            for (int j = 0; j < x.Length; j++)
            {
                double a = Math.Abs(x[j]);
                bool expected = position == 0 && layer >= plan.MassiveBlock &&
                    (down ? layer == plan.MassiveBlock && neurons.Contains(j) : plan.MassiveChannels.Contains(j));
                if (a > SunAbsolute && a >= SunRelative * median) { if (expected) planted++; else other++; }
                else if (expected) missing++;
                if (!expected) { otherAbs = Math.Max(otherAbs, a); if (median > 0) otherRatio = Math.Max(otherRatio, a / median); }
            }
        }
        foreach (var trace in traces)
            for (int l = 0; l < trace.BlockOutputs!.Length; l++)
                for (int t = 0; t < trace.BlockOutputs[l].Length; t++)
                {
                    if (l == 0) tokens++;
                    Scan(trace.BlockOutputs[l][t], l, t, down: false);
                    Scan(trace.DownInputs![l][t], l, t, down: true);
                }
        return new ThresholdCheck(SunAbsolute, SunRelative, traces.Length, tokens, planted, missing, other, R(otherAbs), R(otherRatio));
    }

    /// <summary>Mean and minimum over query positions 1..n-1 of every window of the probability on key 0.</summary>
    internal static (double Mean, double Min) SinkMass(WindowTrace[] traces, int block, int head)
    {
        double sum = 0, min = 1;
        int count = 0;
        foreach (var trace in traces)
        {
            var p = trace.AttentionProbabilities![block][head];
            for (int t = 1; t < p.Length; t++) { sum += p[t][0]; min = Math.Min(min, p[t][0]); count++; }
        }
        return (sum / count, min);
    }

    internal static double MedianAbs(double[] x) => Median(x.Select(Math.Abs).ToArray());

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    // Six significant digits: what the file states, stable against last-bit differences of libm across machines.
    internal static double R(double value) => value == 0 || !double.IsFinite(value) ? value : double.Parse(value.ToString("G6", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);
}
