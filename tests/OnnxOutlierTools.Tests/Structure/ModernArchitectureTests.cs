using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Import;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>#7 items 1-3: QK-norm, sandwich norms (with Gemma's 1 + gamma, embedding scale, soft-capping, sliding
/// windows) and gated attention output, on the real exports of exports-modern and on synthetic decoders of
/// <see cref="LlamaOnnxBuilder"/> with <see cref="DecoderVariants"/> that first run in ONNX Runtime.</summary>
public sealed class ModernArchitectureTests : IDisposable
{
    private readonly TempFolder _temp = new("modern-arch");

    public void Dispose() => _temp.Dispose();

    private static RecognitionResult Recognize(Model model)
    {
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message + "\n" + StructureReport.ToText(result, explain: true));
        return result;
    }

    /// <summary>The block's attention role; fails when its token mixer is not recognized softmax attention.</summary>
    private static AttentionRole AttentionOf(BlockRole b)
    {
        Assert.True(b.Kind == BlockKind.Attention, $"block {b.Index} is a {StructureReport.KindName(b.Kind)} block, not attention");
        return Assert.IsType<AttentionRole>(b.Attention);
    }

    /// <summary>The block's recognized FFN; fails when the block has an opaque FFN or a mixture of experts instead.</summary>
    private static FfnRole FfnOf(BlockRole b) => Assert.IsType<FfnRole>(b.Ffn);

    // ---- real exports --------------------------------------------------------------------------------------

    [Fact]
    public void Qwen3TtsMobius_FiveBlocksWithPerHeadQkNorm()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "qwen3-tts-codepredictor-mobius", "model.onnx"));
        var s = Recognize(model).Structure!;
        Assert.Equal(5, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        Assert.All(s.Blocks, b =>
        {
            var a = AttentionOf(b);
            Assert.Equal((AttentionForm.Attention, 16, 8, 128), (a.Form, a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal((QkNormScope.PerHead, 128L), (a.QueryNorm!.Scope, a.QueryNorm.NormalizedSize));
            Assert.Equal((QkNormScope.PerHead, 128L), (a.KeyNorm!.Scope, a.KeyNorm.NormalizedSize));
            Assert.Equal($"code_predictor.layers.{b.Index}.self_attn.q_norm.weight", a.QueryNorm.Gain.Name);
            Assert.Equal($"code_predictor.layers.{b.Index}.self_attn.k_norm.weight", a.KeyNorm.Gain.Name);
            Assert.Equal(2048, a.QueryNorm.Width);
            Assert.Equal((NormForm.RMSNormalization, "Reshape"), (a.QueryNorm.Norm.Form, a.QueryNorm.HeadSplit!.OpType));
            Assert.Null(a.OutputGate);
            var ffn = FfnOf(b);
            Assert.Equal((FfnKind.Glu, FfnActivation.Silu), (ffn.Kind, ffn.Activation));
            Assert.NotNull(a.Cache);
        });
        Assert.NotNull(s.FinalNorm);
    }

    [Fact]
    public void Qwen35Int8_FullAttentionBlocksHaveQkNormAndPackedGate()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "qwen35-0.8b-int8dyn-graphonly", "decoder_model_merged_quantized.onnx"),
            new LoadOptions { RequireExternalData = false }); // graph only
        var s = Recognize(model).Structure!;
        // Layers 3, 7, ..., 23 are full attention (full_attention_interval 4); the other 18 are Gated DeltaNet.
        var full = s.Blocks.Where(b => b.Attention?.Form == AttentionForm.GroupQueryAttention).ToList();
        Assert.Equal(6, full.Count);
        foreach (var (b, layer) in full.Zip(new[] { 3, 7, 11, 15, 19, 23 }))
        {
            var a = AttentionOf(b);
            Assert.Empty(StructureReport.Missing(b));
            Assert.Equal((8, 2, 256), (a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal($"model.layers.{layer}.attn.q_norm.layernorm.weight", a.QueryNorm!.Gain.Name);
            Assert.Equal($"model.layers.{layer}.attn.k_norm.layernorm.weight", a.KeyNorm!.Gain.Name);
            Assert.Equal((QkNormScope.PerHead, 256L, NormForm.SimplifiedLayerNormalization), (a.QueryNorm.Scope, a.QueryNorm.NormalizedSize, a.QueryNorm.Norm.Form));
            var gate = a.OutputGate!;
            Assert.Equal((GateSource.PackedWithQuery, GateActivation.Sigmoid), (gate.Source, gate.Activation));
            Assert.Same(a.Query, gate.Linear);
            Assert.Equal((LinearForm.MatMulInteger, true, 1024L, 4096L), (a.Query!.Form, a.Query.Quantized, a.Query.InFeatures, a.Query.OutFeatures));
            Assert.Equal($"/model/layers.{layer}/attn/GateMul/output_0", gate.Output.Name);
            Assert.Same(gate.Output, a.Output!.Input);
            Assert.Equal(AttentionWindowKind.Global, a.Window.Kind);
            Assert.Equal(AttentionWindowSource.LocalWindowSizeAttribute, a.Window.Source);
        }
    }

    // ---- synthetic decoders --------------------------------------------------------------------------------

    private static readonly DecoderConfig Config = new(dim: 64, hiddenDim: 96, layers: 2, heads: 4, kvHeads: 2, vocabSize: 128, maxSeqLen: 64);

    /// <summary>Builds, saves and runs the variant on ORT (14 tokens, then one more with the cache when it has one),
    /// then loads it back for recognition.</summary>
    private Model BuildAndRun(string name, LlamaOnnxFlavour flavour, DecoderVariants variants, TensorDataType weightType = TensorDataType.Float)
    {
        string path = _temp.Path(name + ".onnx");
        var options = new LlamaOnnxOptions { Flavour = flavour, GqaRotary = GqaRotary.Separate, Variants = variants, WeightType = weightType };
        using (var built = SyntheticDecoder.CreateModel(Config, 21, options))
            ModelWriter.Save(built, path, new SaveOptions { Durable = false });
        using (var ort = new KvCacheDecoder(path))
        {
            int[] tokens = Enumerable.Range(0, 14).Select(i => (5 * i + 1) % Config.VocabSize).ToArray();
            var first = ort.Run(tokens);
            Assert.All(first.Logits, row => Assert.All(row, x => Assert.True(float.IsFinite(x))));
            if (ort.Layers > 0)
            {
                var next = ort.Run([7], first.Present);
                Assert.All(next.Logits[0], x => Assert.True(float.IsFinite(x)));
            }
            if (variants.LogitSoftcap is float cap)
                Assert.All(first.Logits, row => Assert.All(row, x => Assert.True(Math.Abs(x) <= cap)));
        }
        return ModelReader.Load(path);
    }

    public static TheoryData<LlamaOnnxFlavour, QkNormStyle, TensorDataType> QkNormCases => new()
    {
        { LlamaOnnxFlavour.Decomposed, QkNormStyle.PerHead, TensorDataType.Float },
        { LlamaOnnxFlavour.DecomposedWithPast, QkNormStyle.PerHead, TensorDataType.Float16 }, // RMSNorm in float32 between Casts
        { LlamaOnnxFlavour.DecomposedWithPast, QkNormStyle.FullWidth, TensorDataType.Float },
        { LlamaOnnxFlavour.GenAiGqa, QkNormStyle.PerHead, TensorDataType.Float },
        { LlamaOnnxFlavour.GenAiGqa, QkNormStyle.FullWidth, TensorDataType.Float },
    };

    [Theory]
    [MemberData(nameof(QkNormCases))]
    public void QkNorm_RunsAndIsRecognizedWithItsGains(LlamaOnnxFlavour flavour, QkNormStyle style, TensorDataType weightType)
    {
        using var model = BuildAndRun($"qk-{flavour}-{style}-{weightType}", flavour, new DecoderVariants { QkNorm = style }, weightType);
        var s = Recognize(model).Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        var scope = style == QkNormStyle.PerHead ? QkNormScope.PerHead : QkNormScope.FullWidth;
        Assert.All(s.Blocks, b =>
        {
            var a = AttentionOf(b);
            Assert.Equal((4, 2, 16), (a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal((scope, style == QkNormStyle.PerHead ? 16L : 64L), (a.QueryNorm!.Scope, a.QueryNorm.NormalizedSize));
            Assert.Equal((scope, style == QkNormStyle.PerHead ? 16L : 32L), (a.KeyNorm!.Scope, a.KeyNorm.NormalizedSize));
            Assert.Contains("q_norm", a.QueryNorm.Gain.Name);
            Assert.Contains("k_norm", a.KeyNorm.Gain.Name);
            Assert.Equal(flavour == LlamaOnnxFlavour.GenAiGqa ? NormForm.SimplifiedLayerNormalization : NormForm.DecomposedRmsNorm, a.QueryNorm.Norm.Form);
        });
        Assert.DoesNotContain(s.SharedInitializers, x => x.Initializer.Name.Contains("_norm", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    [InlineData(LlamaOnnxFlavour.GenAiGqa)]
    public void GatedOutput_PackedWithQuery_RunsAndIsRecognized(LlamaOnnxFlavour flavour)
    {
        using var model = BuildAndRun($"gated-{flavour}", flavour, new DecoderVariants { GatedOutput = true, QkNorm = QkNormStyle.PerHead });
        var s = Recognize(model).Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        Assert.All(s.Blocks, b =>
        {
            var a = AttentionOf(b);
            Assert.Equal((4, 2, 16), (a.NumHeads, a.KvHeads, a.HeadSize));
            Assert.Equal(128, a.Query!.OutFeatures); // query and gate
            var gate = a.OutputGate!;
            Assert.Equal(GateSource.PackedWithQuery, gate.Source);
            Assert.Same(a.Query, gate.Linear);
            Assert.Same(gate.Output, a.Output!.Input);
            Assert.Equal(16, a.QueryNorm!.NormalizedSize);
        });
    }

    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    public void GemmaDecomposed_SandwichOnePlusGainScaleCapsAndWindow(LlamaOnnxFlavour flavour)
    {
        var variants = new DecoderVariants
        {
            BlockNorms = BlockNormLayout.Sandwich, GainStyle = NormGainStyle.OnePlus, EmbeddingScale = true, LogitSoftcap = 30f, AttentionSoftcap = 50f,
            SlidingWindow = 4, QkNorm = QkNormStyle.PerHead,
        };
        using var model = BuildAndRun($"gemma-{flavour}", flavour, variants);
        var s = Recognize(model).Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        foreach (var b in s.Blocks)
        {
            var a = AttentionOf(b);
            Assert.Equal(new[] { BlockNormSlot.PreAttention, BlockNormSlot.PostAttention, BlockNormSlot.PreFfn, BlockNormSlot.PostFfn },
                b.Norms.Select(n => n.Slot).ToArray());
            Assert.All(b.Norms, n => Assert.Equal(NormGainForm.OnePlusGain, n.Norm.GainForm));
            Assert.Equal($"model.layers.{b.Index}.post_attention_layernorm.weight", b.PostAttentionNorm!.Gain.Name);
            Assert.Equal($"model.layers.{b.Index}.pre_feedforward_layernorm.weight", b.FfnNorm!.Gain.Name);
            Assert.Equal($"model.layers.{b.Index}.post_feedforward_layernorm.weight", b.PostFfnNorm!.Gain.Name);
            Assert.Equal(50, a.Softcap);
            var expected = b.Index % 2 == 0 ? new AttentionWindow(AttentionWindowKind.Sliding, 4, AttentionWindowSource.WindowMask) : AttentionWindow.Global;
            Assert.Equal(expected, a.Window);
            Assert.NotNull(a.QueryNorm);
        }
        Assert.Equal(Math.Round(Math.Sqrt(64), 2), s.EmbeddingScale!.Scale);
        Assert.True(s.EmbeddingScale.IsSqrtHidden);
        Assert.Same(s.Blocks[0].ResidualIn.Value, s.EmbeddingScale.Output);
        Assert.Equal(30, s.LogitSoftcap!.Cap);
        Assert.Equal("logits", s.LogitSoftcap.Output.Name);
        Assert.NotNull(s.LmHead);
        Assert.Same(s.LmHead!.Output, s.LogitSoftcap.Input);
        Assert.NotNull(s.FinalNorm);
    }

    [Fact]
    public void Olmo2Decomposed_OutputNormsOnlyAndFullWidthQkNorm()
    {
        using var model = BuildAndRun("olmo2", LlamaOnnxFlavour.DecomposedWithPast,
            new DecoderVariants { BlockNorms = BlockNormLayout.PostOnly, QkNorm = QkNormStyle.FullWidth });
        var result = Recognize(model);
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        Assert.Equal(NormPlacement.PreNorm, s.Placement); // the residual stream is never normalized between blocks
        foreach (var b in s.Blocks)
        {
            var a = AttentionOf(b);
            Assert.Equal(new[] { BlockNormSlot.PostAttention, BlockNormSlot.PostFfn }, b.Norms.Select(n => n.Slot).ToArray());
            Assert.Null(b.AttentionNorm);
            Assert.Same(b.ResidualIn.Value, a.Query!.Input);
            Assert.Equal((QkNormScope.FullWidth, 64L), (a.QueryNorm!.Scope, a.QueryNorm.NormalizedSize));
        }
        Assert.NotNull(s.FinalNorm);
        Assert.DoesNotContain("INCOMPLETE", StructureReport.ToText(result, explain: false));
    }

    [Fact]
    public void GemmaGenAi_SandwichWithSkipNormsLocalWindowAndCaps()
    {
        var variants = new DecoderVariants
        {
            BlockNorms = BlockNormLayout.Sandwich, EmbeddingScale = true, LogitSoftcap = 30f, AttentionSoftcap = 50f, SlidingWindow = 4, QkNorm = QkNormStyle.PerHead,
        };
        using var model = BuildAndRun("gemma-genai", LlamaOnnxFlavour.GenAiGqa, variants);
        var result = Recognize(model);
        var s = result.Structure!;
        Assert.Equal(2, s.Blocks.Count);
        RecognizerFixtureTests.AssertCompleteBlocks(s);
        foreach (var b in s.Blocks)
        {
            var a = AttentionOf(b);
            Assert.Equal(4, b.Norms.Count);
            Assert.Equal(NormForm.SimplifiedLayerNormalization, b.PostAttentionNorm!.Form);
            Assert.Equal(NormForm.SkipSimplifiedLayerNormalization, b.FfnNorm!.Form);
            Assert.Equal(NormForm.SimplifiedLayerNormalization, b.PostFfnNorm!.Form);
            Assert.All(b.Norms, n => Assert.Equal(NormGainForm.Plain, n.Norm.GainForm));
            Assert.Equal(50, a.Softcap);
            Assert.Equal(b.Index % 2 == 0 ? AttentionWindowKind.Sliding : AttentionWindowKind.Global, a.Window.Kind);
            Assert.Equal(AttentionWindowSource.LocalWindowSizeAttribute, a.Window.Source);
            if (b.Index % 2 == 0) Assert.Equal(4, a.Window.Size);
        }
        Assert.Equal(NormForm.SkipSimplifiedLayerNormalization, s.FinalNorm!.Form);
        Assert.Equal(30, s.LogitSoftcap!.Cap);
        Assert.True(s.EmbeddingScale!.IsSqrtHidden);
        Assert.Contains(s.Hints, h => h is SandwichNormGainsHint { ExplicitOnePlusGain: false, SqrtHiddenEmbeddingScale: true });
        Assert.Contains(s.Hints, h => StructureReport.HintText(h).Contains("pre-added 1", StringComparison.Ordinal));

        string text = StructureReport.ToText(result, explain: false);
        foreach (var line in new[] { "embed scale   x 8 (sqrt(hidden))", "attn out norm SimplifiedLayerNormalization", "ffn out norm  SimplifiedLayerNormalization",
                     "qk norm       q per-head [16]", "sliding 4", "softcap 50", "logit softcap   30 * tanh(logits / 30)" })
            Assert.Contains(line, text);
        string json = StructureReport.Serialize(StructureReport.ToJson(result, includeTrace: false));
        foreach (var field in new[] { "\"postAttentionNorm\": {", "\"postFfnNorm\": {", "\"slot\": \"postFfn\"", "\"queryNorm\": {", "\"scope\": \"perHead\"",
                     "\"kind\": \"sliding\"", "\"source\": \"localWindowSizeAttribute\"", "\"embeddingScale\": {", "\"logitSoftcap\": {", "\"gainForm\": \"plain\"" })
            Assert.Contains(field, json);
    }

    [Fact]
    public void Variants_OnFusedRotary_AreRefused()
    {
        var options = new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.GenAiGqa, GqaRotary = GqaRotary.Fused, Variants = new DecoderVariants { QkNorm = QkNormStyle.PerHead } };
        var e = Assert.Throws<ArgumentException>(() => SyntheticDecoder.CreateModel(Config, 1, options));
        Assert.Contains("GqaRotary.Separate", e.Message);
    }

    // ---- near misses ---------------------------------------------------------------------------------------

    /// <summary>One pre-norm block (width 32, 4 heads of 8) whose q and k pass a SimplifiedLayerNormalization after a
    /// Reshape of <paramref name="qkShape"/> with a gain of <paramref name="gain"/> entries, then the head split.</summary>
    private static Model NormAfterReshape(long[] qkShape, int gain, string gate = "none")
    {
        const int d = 32, heads = 4, hs = 8;
        var b = new GraphBuilder();
        var x = b.Input("x", TensorDataType.Float, 1, 5, d);
        var rng = new Random(3);
        Value W(string name, int rows, int cols) => b.Initializer(name, Enumerable.Range(0, rows * cols).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray(), rows, cols);
        Value Rms(string name, Value input, int width) => b.Node("SimplifiedLayerNormalization", [input, b.Initializer(name, Enumerable.Repeat(1f, width).ToArray())], [Attr.Float("epsilon", 1e-6f)])[0];
        Value Heads(Value v) => b.Node("Transpose", [b.Op("Reshape", v, b.Initializer($"heads{v.Name}", new long[] { 1, 5, heads, hs }, 4))], [Attr.Ints("perm", 0, 2, 1, 3)])[0];
        Value Qk(string name, Value v) => Heads(Rms(name, b.Op("Reshape", v, b.Initializer($"{name}_shape", qkShape, qkShape.Length)), gain));
        var h = Rms("ln1", x, d);
        var q = Qk("q_norm", b.Op("MatMul", h, W("wq", d, d)));
        var k = Qk("k_norm", b.Op("MatMul", h, W("wk", d, d)));
        var v = Heads(b.Op("MatMul", h, W("wv", d, d)));
        var kT = b.Node("Transpose", [k], [Attr.Ints("perm", 0, 1, 3, 2)])[0];
        var scores = b.Op("Div", b.Op("MatMul", q, kT), b.Scalar("sqrt_hs", MathF.Sqrt(hs)));
        var attn = b.Op("MatMul", b.Node("Softmax", [scores], [Attr.Int("axis", -1)])[0], v);
        var merged = b.Op("Reshape", b.Node("Transpose", [attn], [Attr.Ints("perm", 0, 2, 1, 3)])[0], b.Initializer("merged", new long[] { 1, 5, d }, 3));
        if (gate == "norm") merged = b.Op("Mul", merged, b.Op("Sigmoid", h));
        if (gate == "linear") merged = b.Op("Mul", b.Op("Sigmoid", b.Op("MatMul", h, W("wg", d, d))), merged);
        var mid = b.Op("Add", x, b.Op("MatMul", merged, W("wo", d, d)));
        var ffn = b.Op("MatMul", b.Op("Relu", b.Op("MatMul", Rms("ln2", mid, d), W("w1", d, 64))), W("w2", 64, d));
        b.Output(b.Op("Add", mid, ffn), TensorDataType.Float, 1, 5, d);
        return b.ToModel();
    }

    /// <summary>A near miss of the attention variants is not attention: the generic fallback still reports the block from
    /// the residual stream, with an unknown token mixer (its linears kept) and the FFN the rules recognized.</summary>
    private static void AssertOnlyAnUnknownMixer(RecognitionResult result)
    {
        Assert.True(result.Recognized, result.Message);
        var b = Assert.Single(result.Structure!.Blocks);
        Assert.Equal(BlockKind.Unknown, b.Kind);
        Assert.Null(b.Attention);
        var mixer = Assert.IsType<OpaqueSublayer>(b.Mixer);
        Assert.Equal("wo", mixer.OutputProjection?.Weight.Name);
        Assert.Equal((FfnKind.Mlp, FfnActivation.Relu), (b.Ffn?.Kind, b.Ffn?.Activation));
    }

    [Fact]
    public void PerHeadNormOnRealSplit_IsAQkNorm()
    {
        using var model = NormAfterReshape([1, 5, 4, 8], 8);
        var a = AttentionOf(Assert.Single(Recognize(model).Structure!.Blocks));
        Assert.Equal((QkNormScope.PerHead, 8L, 32L), (a.QueryNorm!.Scope, a.QueryNorm.NormalizedSize, a.QueryNorm.Width));
        Assert.Equal("q_norm", a.QueryNorm.Gain.Name);
    }

    [Fact]
    public void NormWhoseReshapeDoesNotSplitHeads_IsNotAQkNorm()
    {
        using var model = NormAfterReshape([1, 5, 32], 32);
        var result = StructureRecognizer.Recognize(model);
        AssertOnlyAnUnknownMixer(result);
        var perHead = result.Trace.Rules.Single(r => r.Rule == "QkNorm/PerHead");
        Assert.Equal(0, perHead.Matches);
        Assert.Contains("does not split heads", perHead.NearMiss!.Reason);
        Assert.Contains(result.Trace.NotesFor("Attention"), n => n.Contains("query path reaches 0 linear layers", StringComparison.Ordinal));
    }

    [Fact]
    public void NormWithGainOtherThanTheSplitSize_IsNotAQkNorm()
    {
        using var model = NormAfterReshape([1, 5, 8, 4], 8); // the Reshape cuts 4-wide pieces; the gain has 8 entries
        var result = StructureRecognizer.Recognize(model);
        AssertOnlyAnUnknownMixer(result);
        Assert.Contains("is not the gain's size", result.Trace.Rules.Single(r => r.Rule == "QkNorm/PerHead").NearMiss!.Reason);
    }

    [Fact]
    public void SigmoidGateNotFromALinear_IsNotAGatedOutput()
    {
        using var model = NormAfterReshape([1, 5, 4, 8], 8, gate: "norm");
        var result = StructureRecognizer.Recognize(model);
        AssertOnlyAnUnknownMixer(result);
        var gate = result.Trace.Rules.Single(r => r.Rule == "GatedOutput/Sigmoid");
        Assert.Equal(0, gate.Matches);
        Assert.Contains("is not computed by a linear layer", gate.NearMiss!.Reason);
    }

    [Fact]
    public void SigmoidGateFromItsOwnLinear_IsASeparateGateRole()
    {
        using var model = NormAfterReshape([1, 5, 4, 8], 8, gate: "linear");
        var s = Recognize(model).Structure!;
        var a = AttentionOf(Assert.Single(s.Blocks));
        Assert.Equal((GateSource.SeparateLinear, "wg"), (a.OutputGate!.Source, a.OutputGate.Linear.Weight.Name));
        Assert.Equal("wo", a.Output!.Weight.Name);
        Assert.Equal((4, 4, 8), (a.NumHeads, a.KvHeads, a.HeadSize));
    }

    [Fact]
    public void SoftcapWithAnotherOuterFactor_IsNotALogitSoftcap()
    {
        using var model = SyntheticDecoder.CreateModel(Config, 2, new LlamaOnnxOptions { Variants = new DecoderVariants { LogitSoftcap = 30f } });
        var outer = model.Graph.Nodes.Single(n => n.Is("Mul") && n.Outputs[0]?.Name == "logits");
        int constantInput = outer.Inputs[0]!.Producer!.Is("Tanh") ? 1 : 0;
        outer.ReplaceInput(constantInput, model.Graph.AddInitializer("twenty", ArrayTensor.Create<float>([20f])));
        var result = Recognize(model);
        Assert.Null(result.Structure!.LogitSoftcap);
        Assert.NotNull(result.Structure.LmHead);
        Assert.Contains("not the cap", result.Trace.Rules.Single(r => r.Rule == "LogitSoftcap").NearMiss!.Reason);
    }

    [Fact]
    public void PlainPreNormLlama_HasNoVariantRoles()
    {
        using var model = SyntheticDecoder.CreateModel(Config, 4, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.DecomposedWithPast });
        var s = Recognize(model).Structure!;
        Assert.All(s.Blocks, b =>
        {
            var a = AttentionOf(b);
            Assert.Null(a.QueryNorm);
            Assert.Null(a.KeyNorm);
            Assert.Null(a.OutputGate);
            Assert.Null(b.PostAttentionNorm);
            Assert.Null(b.PostFfnNorm);
            Assert.Equal(AttentionWindow.Global, a.Window);
            Assert.Null(a.Softcap);
            Assert.Equal(new[] { BlockNormSlot.PreAttention, BlockNormSlot.PreFfn }, b.Norms.Select(n => n.Slot).ToArray());
        });
        Assert.Null(s.EmbeddingScale);
        Assert.Null(s.LogitSoftcap);
    }
}
