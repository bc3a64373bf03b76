using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>llama2.c's tokenizer.bin through the importer's <see cref="Llama2cTokenizer"/> (a port of run.c's
/// encode, dummy-prefix space included): BOS 1, EOS 2, unknown 0, byte tokens "&lt;0xXX&gt;" at byte + 3.</summary>
internal sealed class Llama2cTextTokenizer : TextTokenizer
{
    private readonly Llama2cTokenizer _tokenizer;
    private readonly Dictionary<string, int> _ids;

    private Llama2cTextTokenizer(string path, Llama2cTokenizer tokenizer) : base(path)
    {
        _tokenizer = tokenizer;
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokenizer.VocabSize; i++) _ids.TryAdd(System.Text.Encoding.UTF8.GetString(tokenizer.Piece(i)), i);
    }

    public override string Kind => TokenizerKinds.Llama2c;
    public override int VocabSize => _tokenizer.VocabSize;
    internal override bool FormatPrependsBos => true; // run.c encodes prompts with BOS

    /// <summary>The wrapped tokenizer (for callers that want run.c's own decode).</summary>
    public Llama2cTokenizer Inner => _tokenizer;

    public static Llama2cTextTokenizer Load(string path)
    {
        try { return new(path, Llama2cTokenizer.Load(path)); }
        catch (Llama2cFormatException ex)
        {
            // One exception type for every tokenizer problem; the importer's message already starts with the path.
            string prefix = ex.FilePath + ": ";
            throw new CalibrationInputException(path, ex.Message.StartsWith(prefix, StringComparison.Ordinal) ? ex.Message[prefix.Length..] : ex.Message, ex);
        }
    }

    public override int[] Encode(string text) => _tokenizer.Encode(text, bos: false, eos: false);

    public override string Decode(int id)
    {
        CheckId(id);
        // run.c writes BOS and EOS as "\n<s>\n" and "\n</s>\n"; reports show the token, not the newlines.
        if (id is Llama2cTokenizer.Bos or Llama2cTokenizer.Eos or 0) return System.Text.Encoding.UTF8.GetString(_tokenizer.Piece(id)).Trim();
        return TokenBytes.Display(_tokenizer.DecodeBytes(-1, id));
    }

    public override int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    internal override SpecialTokenIds FormatSpecials() => new(Llama2cTokenizer.Bos, Llama2cTokenizer.Eos, null, null, null, 0);
}
