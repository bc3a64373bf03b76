using OnnxOutlierTools.Calibration.Text;

namespace OnnxOutlierTools.Tests.Calibration;

/// <summary><see cref="CalibrationInputs.Prepare"/>: the calibration side of --text/--ids/--tokenizer/--seq-len/
/// --max-tokens/--bos, on fixture models' folders.</summary>
public sealed class TokenizerTestsInputs
{
    private static string Stories => Fixtures.Path("text", "tinystories-sample.txt");

    [Fact]
    public void TextWithTheTokenizerFoundBesideTheModel()
    {
        string model = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");
        var prepared = CalibrationInputs.Prepare(new CalibrationRequest(model, Stories, null, null, 128, 512, BosMode.Auto, IsEncoder: false,
            ContextLength: (2048, "genai_config.json context_length"), EmbeddingRows: 32000));
        var d = prepared.Description;
        Assert.Equal(TokenizerKinds.HfSentencePieceBpe, d.TokenizerKind);
        Assert.Equal(Fixtures.Export("llama-genai-gqa-fp32", "tokenizer.json"), d.Tokenizer);
        Assert.True(d.BosPrepended);
        Assert.Equal(1, d.BosId);
        Assert.Equal("--bos auto: tokenizer_config.json add_bos_token = true", d.BosReason);
        Assert.Equal(4, d.Windows);
        Assert.Equal(512, d.TotalTokens);
        Assert.True(d.BudgetReached);
        Assert.Contains(d.Notes, n => n.Contains("genai_config.json gives BOS id 0"));
        Assert.All(prepared.Corpus.Windows, w => Assert.Equal(1, w.Ids[0]));
    }

    [Fact]
    public void IdsWithoutATokenizerAndEncoderText()
    {
        using var temp = new TempFolder("inputs");
        string model = temp.Path("model.onnx");
        File.WriteAllText(model, "only the folder matters here");
        File.WriteAllText(temp.Path("config.json"), """{"model_type": "llama", "bos_token_id": 1}""");
        File.WriteAllText(temp.Path("ids.json"), "[[5, 6, 7, 8, 9]]");
        var auto = CalibrationInputs.Prepare(new CalibrationRequest(model, null, temp.Path("ids.json"), null, 4, null, BosMode.Auto, false));
        Assert.Null(auto.Tokenizer);
        Assert.Equal("ids", auto.Description.SourceKind);
        Assert.Equal([[5, 6, 7, 8], [9]], auto.Corpus.Windows.Select(w => w.Ids));
        var on = CalibrationInputs.Prepare(new CalibrationRequest(model, null, temp.Path("ids.json"), null, 4, null, BosMode.On, false));
        Assert.Equal([[1, 5, 6, 7], [1, 8, 9]], on.Corpus.Windows.Select(w => w.Ids));
        Assert.Equal("--bos on: BOS 1 from config.json", on.Description.BosReason);

        var encoder = CalibrationInputs.Prepare(new CalibrationRequest(MiniLm.ModelPath, Fixtures.Path("text", "prose-sample.txt"), null, null, 128, 2000, BosMode.Auto, IsEncoder: true,
            ContextLength: (512, "position embedding rows"), EmbeddingRows: 30522));
        Assert.Equal(TokenizerKinds.WordPiece, encoder.Description.TokenizerKind);
        Assert.False(encoder.Description.BosPrepended);
        Assert.All(encoder.Corpus.Windows, w => Assert.Equal(WindowKind.EncoderSegment, w.Kind));
    }

    [Fact]
    public void RequestErrorsAreOneLine()
    {
        string model = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");
        var neither = Assert.Throws<CalibrationInputException>(() => CalibrationInputs.Prepare(new CalibrationRequest(model, null, null, null, 64, null, BosMode.Auto, false)));
        Assert.Equal("--text/--ids: give the calibration input: --text FILE or --ids FILE.json", neither.Message);
        var both = Assert.Throws<CalibrationInputException>(() => CalibrationInputs.Prepare(new CalibrationRequest(model, Stories, "ids.json", null, 64, null, BosMode.Auto, false)));
        Assert.Equal("--text/--ids: give --text or --ids, not both", both.Message);
        var context = Assert.Throws<CalibrationInputException>(() => CalibrationInputs.Prepare(new CalibrationRequest(model, Stories, null, null, 4096, null, BosMode.Auto, false, (2048, "genai_config.json context_length"))));
        Assert.Equal($"{model}: --seq-len 4096 exceeds the model's context of 2048 tokens (genai_config.json context_length)", context.Message);
        // The fused GPT-2 export is a 1000-token random model: its folder's real GPT-2 tokenizer does not fit it.
        string gpt2 = Fixtures.Export("gpt2-ort-fused-fp32", "past.onnx");
        var rows = Assert.Throws<CalibrationInputException>(() => CalibrationInputs.Prepare(new CalibrationRequest(gpt2, Stories, null, null, 64, 256, BosMode.Auto, false, EmbeddingRows: 1000)));
        Assert.Contains("is outside the model's 1000 embedding rows; the tokenizer does not match the model", rows.Message);
        var noTokenizer = Assert.Throws<TokenizerNotFoundException>(() => CalibrationInputs.Prepare(new CalibrationRequest(Fixtures.Export("llama-torch-nopast", "model.onnx"), Stories, null, null, 64, null, BosMode.Auto, false)));
        Assert.Contains("no tokenizer found", noTokenizer.Message);
    }
}
